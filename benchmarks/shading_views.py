"""The light's estimate on scenes from another renderer: devstack's known-camera views.

`make quality`'s scenes are ray-traced by benchmarks.quality; the constants of the shading estimate
were measured there. This checks the estimate where it was not tuned: devstack.scenes.camera_scene's
floors and facades (a window's falloff, a soft shadow, a sharp patch of sun 60 % brighter, a dark
object in front), each view with four old surfaces (devstack's tiles, planks and carpet, and a plain
one), quad geometry. It prints the grey-card PSNR of each estimate (the texture-space one and the
blur it replaced; make quality's metrics.shading_psnr) against the scene's true light, per view,
then the median per old surface.

    python -m benchmarks.shading_views [--size 1024x768]
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass

import cv2
import numpy as np

from benchmarks.quality import metrics
from devstack import scenes
from renderkit.imaging import polygon_mask
from renderkit.planes import quad_plane
from services.projection.shading import BLUR, TEXTURE_SPACE, estimate_shading
from services.projection.texture import texel_transform

VIEWS = (
    scenes.View(60, 35, 20),
    scenes.View(45, 30, 0),
    scenes.View(80, 40, 0),
    scenes.View(60, 15, 5),  # grazing
    scenes.View(50, 25, -25),
    scenes.View(60, -8, 25, "facade"),
    scenes.View(50, -4, -35, "facade"),
)
ESTIMATES = (BLUR, TEXTURE_SPACE)


def old_surfaces(side: int = 256) -> dict[str, np.ndarray]:
    """The old surfaces, one swatch per devstack TILE_M: its tiles, planks and carpet, and a plain
    colour with a little noise (paint)."""
    rng = np.random.default_rng(7)
    plain = np.clip(150 + 4 * rng.standard_normal((side, side, 3)), 0, 255).astype(np.uint8)
    return {
        "tiles": scenes.tile_texture(side),
        "planks": scenes.plank_texture(side),
        "carpet": scenes.carpet_texture(side),
        "plain": plain,
    }


@dataclass(frozen=True)
class Result:
    surface: str
    view: scenes.View
    psnr: dict[str, float]  # per estimate


def measure(old: str, swatch: np.ndarray, view: scenes.View, size: tuple[int, int]) -> Result:
    """One view of one old surface: each estimate from the quad's outline and plane."""
    scene = scenes.camera_scene(view, swatch, swatch, size=size, supersample=2)
    height, width = scene.photo.shape[:2]
    plane = quad_plane(np.asarray(scene.quad, np.float64), width, height)
    H = np.array(plane.homography.m).reshape(3, 3)
    mask = polygon_mask(scene.quad, width, height)
    side = swatch.shape[0]
    to_plane = texel_transform(H, 4.0, 4.0 / plane.aspect_ratio, 0.0, side, side)
    region = cv2.erode(scene.visible_surface.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    light = scene.light if scene.light.ndim == 2 else scene.light.mean(axis=2)
    truth = light / np.float32(np.median(light[region]))
    psnr = {}
    for name in ESTIMATES:
        field = estimate_shading(scene.photo, mask, to_plane, name).region(0, 0, width, height)
        psnr[name] = metrics.shading_psnr(field, truth[..., None], region)  # make quality's grey card
    return Result(old, view, psnr)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.shading_views", description=__doc__)
    parser.add_argument("--size", default="1024x768", help="photo size, WIDTHxHEIGHT")
    args = parser.parse_args(argv)
    width, height = (int(n) for n in args.size.split("x"))
    started = time.perf_counter()
    results = [measure(old, swatch, view, (width, height)) for old, swatch in old_surfaces().items() for view in VIEWS]
    print("\n### The light's estimate on devstack's known-camera views (grey-card PSNR against the true light)\n")
    print("| old surface | view (fov, pitch, yaw) | " + " | ".join(ESTIMATES) + " |")
    print("|---|---|" + "---|" * len(ESTIMATES))
    for r in results:
        view = f"{r.view.surface} {r.view.fov_deg}°, {r.view.pitch_deg}°, {r.view.yaw_deg}°"
        print(f"| {r.surface} | {view} | " + " | ".join(f"{r.psnr[e]:.2f} dB" for e in ESTIMATES) + " |")
    print("\n| old surface | " + " | ".join(f"{e}: median / worst" for e in ESTIMATES) + " |")
    print("|---|" + "---|" * len(ESTIMATES))
    for old in dict.fromkeys(r.surface for r in results):
        mine = [r for r in results if r.surface == old]
        cells = []
        for e in ESTIMATES:
            values = [r.psnr[e] for r in mine]
            cells.append(f"{statistics.median(values):.2f} / {min(values):.2f} dB")
        print(f"| {old} | " + " | ".join(cells) + " |")
    print(f"\n{len(results)} views in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
