"""The embedded Triton host's workspace: one per port, a killed host's left-over removed."""

from __future__ import annotations

from pathlib import Path

from services.triton_host.__main__ import workspace_for


def test_a_killed_hosts_workspace_is_removed_before_the_next_on_its_port(tmp_path: Path) -> None:
    home = tmp_path / "pytriton"
    first = workspace_for(8001, home)
    assert first == home / "render-triton-8001" and not first.exists()  # PyTriton makes it
    (first / "tritonserver").mkdir(parents=True)  # what a SIGKILLed host leaves
    (first / "tritonserver" / "socket").write_text("stale")
    assert workspace_for(8001, home) == first and not first.exists()
    other = workspace_for(8101, home)
    assert other != first
