"""Mask IoU of the click and box segmentation on hard rooms (benchmarks.segmentation_scenes).

    python -m benchmarks.segmentation_iou [--before] [--scale 1.0]

The scenes: benchmarks.segmentation_scenes' hard rooms, and the quality benchmark's known-camera
scenes with its clicks. For each scene, two modes: points only (2-3 clicks on the surface, 1-2 off it) and box + points
(the same clicks and a box around the surface). Reported per scene and as medians: the IoU of the
mask (> 127) with the true visible surface, and the time per mask (CPU seconds of this process,
which other work on the machine does not inflate). `--before` also scores the GrabCut path this
replaced (GrabCut on chroma-weighted Lab at 384 px), kept here as the baseline.

score_masks is the entry point other benchmarks call (the quality benchmark's points modes).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from benchmarks.segmentation_scenes import SegmentationScene, camera_scenes, hard_scenes
from services.segmentation.interactive import refine_edges, select_surface

Segmenter = Callable[[np.ndarray, tuple[float, float, float, float] | None, np.ndarray, np.ndarray], np.ndarray]
MODES = ("points only", "box + points")
TARGETS = {"points only": 0.90, "box + points": 0.93}


def mask_iou(mask: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union of a uint8 mask (> 127 is in) and a boolean truth."""
    selected = mask > 127
    union = int((selected | truth).sum())
    return float((selected & truth).sum()) / union if union else 1.0


@dataclass(frozen=True)
class MaskScore:
    """One mask: its scene, mode, IoU and CPU time."""

    scene: str
    mode: str
    iou: float
    seconds: float


def score_masks(
    segment: Segmenter = select_surface,
    scenes: Sequence[SegmentationScene] | None = None,
    modes: Sequence[str] = MODES,
) -> list[MaskScore]:
    """Every scene segmented in every mode by `segment(photo, box or None, positives, negatives)`."""
    results = []
    for scene in hard_scenes() if scenes is None else scenes:
        for mode in modes:
            box = scene.box if mode == "box + points" else None
            start = time.process_time()
            mask = segment(scene.photo, box, scene.positives, scene.negatives)
            seconds = time.process_time() - start
            results.append(MaskScore(scene.name, mode, mask_iou(mask, scene.truth), seconds))
    return results


def grabcut_before(
    photo_bgr: np.ndarray,
    box: tuple[float, float, float, float] | None,
    positives: np.ndarray,
    negatives: np.ndarray,
) -> np.ndarray:
    """The path this benchmark measures against: GrabCut on Lab with lightness damped and chroma
    boosted at 384 px, the clicked regions kept, the edge refined by a guided filter."""
    height, width = photo_bgr.shape[:2]
    scale = min(1.0, 384 / max(width, height))
    small = cv2.resize(
        photo_bgr, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA
    )
    sh, sw = small.shape[:2]
    radius = max(2, round(0.02 * max(sw, sh)))
    labels = np.full((sh, sw), cv2.GC_PR_BGD, np.uint8)
    if box is not None:
        x0, y0, x1, y1 = (round(v * scale) for v in box)
        outside = np.full((sh, sw), True)
        outside[max(0, y0) : min(sh, y1), max(0, x0) : min(sw, x1)] = False
        labels[outside] = cv2.GC_BGD
        labels[~outside] = cv2.GC_PR_FGD
    for points, value in ((positives, cv2.GC_FGD), (negatives, cv2.GC_BGD)):
        for x, y in points * scale:
            cv2.circle(labels, (round(x), round(y)), radius, (value,), -1)
    lab = cv2.cvtColor(small, cv2.COLOR_BGR2LAB).astype(np.float32)
    lab[..., 0] *= 0.35
    lab[..., 1:] = (lab[..., 1:] - 128.0) * 3.0 + 128.0
    background, foreground = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0x5EED)
    cv2.grabCut(  # type: ignore[call-overload]
        np.clip(lab, 0, 255).astype(np.uint8), labels, None, background, foreground, 4, cv2.GC_INIT_WITH_MASK
    )
    selected = ((labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)).astype(np.uint8)
    _, components = cv2.connectedComponents(selected)
    keep = {int(components[min(sh - 1, round(y * scale)), min(sw - 1, round(x * scale))]) for x, y in positives}
    keep.discard(0)
    if keep:
        selected = np.isin(components, list(keep)).astype(np.uint8)
    full = cv2.resize(selected * 255, (width, height), interpolation=cv2.INTER_LINEAR)
    return refine_edges(photo_bgr, np.where(full > 127, 255, 0).astype(np.uint8), radius=int(np.ceil(1 / scale)) + 1)


def _table(title: str, scores: list[MaskScore]) -> None:
    print(f"\n{title}")
    names = list(dict.fromkeys(s.scene for s in scores))
    print(f"{'scene':<40}" + "".join(f"{mode:>22}" for mode in MODES))
    for name in names:
        cells = {s.mode: s for s in scores if s.scene == name}
        print(f"{name:<40}" + "".join(f"{cells[m].iou:>13.3f} {cells[m].seconds:>6.2f} s" for m in MODES if m in cells))
    for mode in MODES:
        ious = [s.iou for s in scores if s.mode == mode]
        seconds = [s.seconds for s in scores if s.mode == mode]
        target = TARGETS[mode]
        verdict = "met" if statistics.median(ious) >= target else "NOT met"
        print(
            f"{mode:<14} median IoU {statistics.median(ious):.3f}, mean {statistics.mean(ious):.3f}, "
            f"min {min(ious):.3f}; median {statistics.median(seconds):.2f} s CPU (target ≥ {target:.2f}: {verdict})"
        )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", action="store_true", help="also score the GrabCut path this replaced")
    parser.add_argument("--scale", type=float, default=1.0, help="scene size factor (1: 1024 x 768)")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)  # the timings are for one core
    groups = {"hard rooms": hard_scenes(args.scale), "the quality benchmark's camera scenes": camera_scenes()}
    for group, scenes in groups.items():
        if args.before:
            _table(f"{group}, before: GrabCut on chroma-weighted Lab", score_masks(grabcut_before, scenes))
        _table(f"{group}, after: invariant features, superpixel walk, GrabCut on them", score_masks(scenes=scenes))


if __name__ == "__main__":
    main()
