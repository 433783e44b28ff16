"""make quality: material swaps of ray-traced scenes scored against their ground truth.

The scenes are built unlike the pipeline's own assumptions (benchmarks.quality.render): rooms and
a street lit by ambient light, a window as an area light, the sun through the window's panes or
over a facade (hard edges, objects' shadows), a lamp and a highlight; old surfaces of worn, tinted
and textured tiles, stone cladding, brick, wood and a patterned carpet (materials); new materials
from texture photos; phone photos (JPEG quality 90, sensor noise, EXIF focal length and orientation,
4:3, 16:9, portrait and 12 MP) (scenes). The pipeline's stage functions run in this process for
each hint mode (modes) and each shading estimate, and are scored (metrics): the swap by in-surface
PSNR and SSIM, the shading estimate against the true shading (a white-albedo render), masks by IoU,
geometry by the plane's normal and the scale (report). `python -m benchmarks.quality --quick` runs
three small scenes.
"""
