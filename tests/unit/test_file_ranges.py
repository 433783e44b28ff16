"""The Range header of an output link (gateway.http.files.byte_range)."""

from __future__ import annotations

from gateway.http.files import byte_range


def test_ranges_within_and_past_a_file() -> None:
    assert byte_range("bytes=0-9", 100) == (0, 9)
    assert byte_range("bytes=90-", 100) == (90, 99)
    assert byte_range("bytes=-5", 100) == (95, 99)
    assert byte_range("bytes=0-1000", 100) == (0, 99)
    assert byte_range("bytes=100-", 100) == "unsatisfiable"
    assert byte_range("bytes=0-1,5-6", 100) is None  # several ranges: the whole file


def test_a_number_too_long_for_int_is_past_any_file() -> None:
    """int() refuses over 4,300 digits: such a header was a 500 and a traceback per request."""
    long = "9" * 5000
    assert byte_range(f"bytes={long}-", 100) == "unsatisfiable"
    assert byte_range(f"bytes=0-{long}", 100) == (0, 99)
    assert byte_range(f"bytes=-{long}", 100) == (0, 99)
    assert byte_range(f"bytes={'0' * 5000}1-2", 100) == (1, 2)  # leading zeros are still a small number
