"""A gateway's bounded memory of the credentials it verified (API keys and JWTs alike)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

# Verified credentials a gateway keeps at most; past it, those no longer fresh go, then the oldest.
VERIFIED_MOST = 10_000


def make_room(entries: dict[str, T], fresh: Callable[[T], bool], most: int = VERIFIED_MOST) -> dict[str, T]:
    """The entries, with room for one more: as they are below `most`; at it, without those no
    longer fresh and, if more than three quarters of `most` are left, without the oldest (the
    dict's order) down to that. A stream of distinct credentials then costs one pass over the
    entries per quarter of `most` remembered, not one per credential, and memory stays bounded."""
    if len(entries) < most:
        return entries
    kept = {token: entry for token, entry in entries.items() if fresh(entry)}
    keep = most * 3 // 4
    if len(kept) > keep:
        kept = dict(itertools.islice(kept.items(), len(kept) - keep, None))
    return kept
