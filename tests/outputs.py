"""Reading jobs' outputs in tests: results name local objects by key ("local:renders/..."), never by
the server's path, so tests resolve keys against the storage directories their fixtures created."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from render.v1 import render_service_pb2 as pb
from renderkit import imaging
from renderkit.storage import key_of

_ROOTS: list[Path] = []


def register_storage(root: Path | str) -> None:
    """Remembers a storage directory a fixture gave a gateway or a stack."""
    path = Path(root).resolve()
    if path not in _ROOTS:
        _ROOTS.append(path)


def output_path(output: pb.OutputFile) -> Path:
    """The file behind an output, in whichever registered storage holds its key."""
    key = key_of(output.uri)
    for root in _ROOTS:
        if (root / key).exists():
            return root / key
    raise FileNotFoundError(f"no registered storage holds {key}")


def read_output(output: pb.OutputFile) -> np.ndarray:
    """An output image, decoded."""
    return imaging.decode_bgr(output_path(output).read_bytes())
