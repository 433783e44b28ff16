"""How many times a swatch repeats across a surface (seed 002's real_world_scale)."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_REPEATS = 24.0


@dataclass(frozen=True)
class Tiling:
    """Repeats of the swatch along the texture square's u and v axes, and how they were chosen."""

    repeats_u: float
    repeats_v: float
    source: str


def tiling_from_repeats(repeats: float, plane_aspect: float, swatch_aspect: float) -> Tiling:
    """`repeats` swatches along the plane's longer side; the other side keeps the swatch's proportions.

    plane_aspect is the surface rectangle's physical width/height; swatch_aspect the swatch image's.
    """
    if plane_aspect >= 1.0:
        repeats_u = repeats
        tile_w = plane_aspect / repeats  # in units of the rectangle's height
        repeats_v = 1.0 / (tile_w / swatch_aspect)
    else:
        repeats_v = repeats
        tile_h = 1.0 / repeats
        repeats_u = plane_aspect / (tile_h * swatch_aspect)
    return Tiling(repeats_u, repeats_v, "repeats")


def tiling_from_sizes(surface_w_m: float, surface_h_m: float, swatch_w_m: float, swatch_h_m: float) -> Tiling:
    """Repeats from the physical sizes of the surface rectangle and of the swatch."""
    return Tiling(surface_w_m / swatch_w_m, surface_h_m / swatch_h_m, "swatch_size")
