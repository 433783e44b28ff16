"""TritonModels over a test's stand-in for tritonclient's client (an object with its methods)."""

from __future__ import annotations

from typing import Any

from renderkit.triton import TritonModels


class StandInModels(TritonModels):
    """TritonModels whose client is the stand-in, never renewed (no certificates, no age)."""

    def __init__(self, client: Any) -> None:
        self._stand_in = client
        super().__init__("127.0.0.1:1", max_age_s=float("inf"))

    def _connect(self) -> Any:
        return self._stand_in
