"""Which Redis failures a ledger call waits out (gateway.ledger.connection.transient)."""

from __future__ import annotations

import pytest
from redis._parsers.base import BaseParser

from gateway.ledger.connection import transient


@pytest.mark.parametrize(
    "reply",
    [
        "OOM command not allowed when used memory > 'maxmemory'.",
        "MISCONF Errors writing to the AOF file: No space left on device",
        "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSCRIPT.",
        "NOREPLICAS Not enough good replicas to write.",
        "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
        "TRYAGAIN Multiple keys request during rehashing of slot",
        "LOADING Redis is loading the dataset in memory",
        "READONLY You can't write against a read only replica.",
        # A script's refusal at its first write, as Redis wraps it.
        "ERR Error running script (call to f_d149): @user_script:180: @user_script: 180: "
        "-OOM command not allowed when used memory > 'maxmemory'.",
        "ERR Error running script (call to f_d149): @user_script:12: @user_script: 12: "
        "-MISCONF Errors writing to the AOF file: No space left on device",
        # A transaction's, as redis-py words it.
        "ERR Command # 1 (HSET geometry:f segmentation x) of pipeline caused error: "
        "('MISCONF Errors writing to the AOF file: No space left on device',)",
    ],
)
def test_redis_refusing_for_now_is_waited_out(reply: str) -> None:
    assert transient(BaseParser.parse_error(reply))


@pytest.mark.parametrize(
    "reply",
    [
        "ERR Invalid stream ID specified as stream command argument",
        "WRONGTYPE Operation against a key holding the wrong kind of value",
        "NOSCRIPT No matching script. Please use EVAL.",
        "ERR Error running script (call to f_d149): @user_script:3: user_script:3: bad argument",
        "ERR unknown command 'OOMX'",
    ],
)
def test_an_error_in_the_call_is_not(reply: str) -> None:
    assert not transient(BaseParser.parse_error(reply))
