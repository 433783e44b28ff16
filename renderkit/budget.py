"""The memory one request needs, from its images' pixel counts (read from their headers).

A small file can claim a large image (a flat 6300x6300 PNG is 38 KB, and a JPEG's header can be
patched to any size): its cost shows only once decoded. The gateway refuses at submit what the
headers say cannot fit in the per-request budget (REQUEST_MEMORY_MB, 2 GiB by default), checks
downloaded inputs the same way when they arrive, and the projection stage checks again before it
decodes anything.

A request's stages run one after another, each in its own process, so what a request needs is the
peak of its heaviest stage; within a stage, the peak of its heaviest phase. The constants are peak
resident memory growth (VmHWM, in-process, threads included) measured here on noisy JPEG photos
with a surface covering the whole photo (the worst case: the sampler and the edge refinement work
over the mask's bounding box), then given a margin of about 25%:

| stage, phase                         | measured, bytes per pixel          | constant |
|--------------------------------------|------------------------------------|----------|
| segmentation, edge refinement        | 36-40 per photo pixel (1-24 MP)    | 50       |
| projection, composite                | 31 per photo pixel + 72 MB (8-40 MP) | 32     |
| projection, the swatch's mip atlas   | 79-82 per swatch pixel (1-16 MP)   | 100      |
| projection, normal + roughness maps  | 67-70 per swatch pixel (4-16 MP)   | 85       |
| generation, refinement of the result | 51-66 per photo pixel (1-16 MP)    | 80       |
| generation, texture edit             | 48-54 per texture pixel (1-16 MP)  | 68       |
| generation, texture edit with maps   | 76-81 per texture pixel (4-16 MP)  | 100      |
| generation, a room's reference image | 4-6 per reference pixel (4-16 MP)  | 8        |

The projection (services/projection/composite.py) holds the photo, the mask, the shading field
and the sampled colour (6 bytes a pixel, sampled while the shading is estimated) and samples in
strips of 128K-256K pixels whose temporaries are a few tens of MB whatever the photo's size; its peak
is while the shading is estimated (benchmarks/projection.py measures it: with the blur estimate a
1 MP photo +70 MB, 4 MP +170 MB, 8 MP +320 MB, 12 MP +426 MB, 24 MP +806 MB, 40 MP +1,312 MB).
The mip atlas is four float32 blends per octave (~74 bytes per swatch pixel, plus the build's
temporaries) when the surface needs the swatch's full resolution, and a fraction of that when it
does not (a 512 px swatch on a 4K floor: under a quarter; only the blends from the finest one
the surface looks up are made); the estimate here cannot know the plane, so it assumes the worst.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

# The default budget of one request (REQUEST_MEMORY_MB at the gateway).
DEFAULT_REQUEST_BYTES = 2 * 1024**3

# Everything that does not grow with the images: the sampler's strips in flight, the process's
# working buffers, the encoded request itself.
FIXED_BYTES = 288 * 1024**2
SEGMENTATION_BYTES_PER_PIXEL = 50
PROJECTION_BYTES_PER_PIXEL = 32
ATLAS_BYTES_PER_PIXEL = 100
MAPS_BYTES_PER_PIXEL = 85
# While the maps are made, the projection still holds the result and its encodings.
RESULT_BYTES_PER_PIXEL = 6
REFINEMENT_BYTES_PER_PIXEL = 80
EDIT_BYTES_PER_PIXEL = 68
EDIT_WITH_MAPS_BYTES_PER_PIXEL = 100
REFERENCE_BYTES_PER_PIXEL = 8


def projection_bytes(photo_pixels: int, swatch_pixels: int, material_maps: bool) -> int:
    """The peak of one projection: the composite with the swatch's atlas, then the swatch's maps."""
    composite = PROJECTION_BYTES_PER_PIXEL * photo_pixels + ATLAS_BYTES_PER_PIXEL * swatch_pixels
    maps = RESULT_BYTES_PER_PIXEL * photo_pixels + MAPS_BYTES_PER_PIXEL * swatch_pixels if material_maps else 0
    return FIXED_BYTES + max(composite, maps)


def material_swap_bytes(
    photo_pixels: int,
    swatch_pixels: Sequence[int],
    *,
    material_maps: bool = False,
    refinement: bool = False,
    segmentation: bool = True,
) -> int:
    """The peak of a material swap: its heaviest stage among segmentation, the projection of the
    largest swatch (variants are projected one at a time) and the refinement. `segmentation` False:
    the segmentation stage is not sent the photo (a quad alone outlines the surface: the quad is
    drawn from its corners, the photo never decoded there), so its edge refinement costs nothing."""
    stages = [projection_bytes(photo_pixels, max(swatch_pixels, default=0), material_maps)]
    if segmentation:
        stages.append(FIXED_BYTES + SEGMENTATION_BYTES_PER_PIXEL * photo_pixels)
    if refinement:
        stages.append(FIXED_BYTES + REFINEMENT_BYTES_PER_PIXEL * photo_pixels)
    return max(stages)


def texture_edit_bytes(texture_pixels: int, *, material_maps: bool = False) -> int:
    """The peak of a texture edit: the texture decoded, edited, blended and encoded (and its maps)."""
    per_pixel = EDIT_WITH_MAPS_BYTES_PER_PIXEL if material_maps else EDIT_BYTES_PER_PIXEL
    return FIXED_BYTES + per_pixel * texture_pixels


def room_render_bytes(reference_pixels: Sequence[int]) -> int:
    """The peak of a room render: its reference images, all decoded at once."""
    return FIXED_BYTES + REFERENCE_BYTES_PER_PIXEL * sum(reference_pixels)


def largest_pixels(need: Callable[[int], int], budget_bytes: int) -> int:
    """The most pixels an image can have for need(pixels) to stay within the budget (need grows
    with the pixels); 0 when nothing fits."""
    low, high = 0, 1 << 40
    if need(low) > budget_bytes:
        return 0
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if need(middle) <= budget_bytes else (low, middle)
    return low


def gigabytes(value: int) -> str:
    """A byte count in GB (binary) with one decimal, as messages show it."""
    return f"{value / 1024**3:.1f} GB"


def over_budget_text(width: int, height: int, noun: str, need: int, budget_bytes: int, largest: int) -> str:
    """Why an image does not fit, safe to show: what it needs, what a request may use, and the
    largest such image that would fit."""
    megapixels = largest / 1e6
    most = f"{megapixels:.0f} MP" if megapixels >= 10 else f"{megapixels:.1f} MP"
    needed, allowed = gigabytes(need), gigabytes(budget_bytes)
    if needed == allowed:  # just over: a second decimal shows the difference
        needed, allowed = f"{need / 1024**3:.2f} GB", f"{budget_bytes / 1024**3:.2f} GB"
    return (
        f"a {width}x{height} {noun} needs about {needed} to render; a request may use {allowed} (at most about {most})"
    )
