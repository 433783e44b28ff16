"""make quality's scenes for tests that need only their photos (planes, lines): the new material,
which the photo does not show, is devstack's planks instead of scikit-image's textures (which
only `make quality` installs)."""

from __future__ import annotations

import pytest

from benchmarks.quality import materials, scenes
from devstack.scenes import plank_texture


def quality_scene(name: str, monkeypatch: pytest.MonkeyPatch) -> scenes.Scene:
    """The make quality scene whose name starts with `name`, rendered with planks as the new
    material."""
    planks = materials.Swatch("planks", plank_texture(256), (1.0, 1.0))
    monkeypatch.setattr(materials, "swatch", lambda _: planks)
    return scenes.build(next(s for s in scenes.SPECS if s.name.startswith(name)))
