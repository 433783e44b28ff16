"""The open files' limit every public port's connections come out of (renderkit.serving)."""

from __future__ import annotations

import resource
import subprocess
import sys

from renderkit.serving import connection_limit


def test_each_port_gets_its_share_of_what_the_process_may_open() -> None:
    assert connection_limit(10_000, ports=2, open_files=1 << 20) == 10_000
    assert connection_limit(10_000, ports=2, open_files=20_000) == (20_000 - 1024) // 2
    assert connection_limit(10_000, ports=1, open_files=4096) == 4096 - 1024
    assert connection_limit(10_000, ports=2, open_files=1024) == (1024 - 256) // 2  # a quarter kept, not 1,024


def test_the_soft_limit_is_raised_to_the_hard_one() -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    script = (
        "import resource\n"
        "from renderkit.serving import raise_open_files_limit\n"
        "hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))\n"
        "print(raise_open_files_limit(), resource.getrlimit(resource.RLIMIT_NOFILE)[0])\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()
    expected = hard if hard != resource.RLIM_INFINITY else 1 << 20
    assert [int(v) for v in out] == [expected, expected]
