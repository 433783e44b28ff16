"""The hint modes: what a client gives, and what the pipeline's stage functions make of it.

Each mode runs the segmentation and depth stages' own functions in this process on the decoded
photo, as the servers would (a client's mask or a quad's outline refined against the photo), and
returns the mask, the plane and the scale the projection gets, with the truth to score it against.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from benchmarks.quality import metrics
from benchmarks.quality.materials import Swatch
from benchmarks.quality.scenes import Scene
from render.depth.v1 import depth_service_pb2 as depth_pb
from renderkit.imaging import polygon_mask
from renderkit.planes import quad_plane
from renderkit.scale import tiling_from_sizes
from services.depth.plane import plane_homography
from services.depth.server import lines_plane
from services.depth.vanishing import texture_axis
from services.segmentation.interactive import refine_edges, select_surface


@dataclass(frozen=True)
class Geometry:
    """What the projection gets from a mode, and the truth of the swap it should make."""

    mask: np.ndarray  # uint8
    H: np.ndarray
    repeats: tuple[float, float]
    truth: np.ndarray  # uint8 BGR
    plane_error_deg: float
    scale_error: float
    iou: float  # of the mask (> 127) with the visible surface


class Named(Protocol):
    """What a scene's spec tells a mode: the name a request gives the surface."""

    @property
    def surface(self) -> str: ...


class Swappable(Protocol):
    """What the quad and mask modes need of a scene: the photo, the surface's geometry and the
    truth of a swap on it (a Scene, or another benchmark's room)."""

    @property
    def spec(self) -> Named: ...

    @property
    def photo(self) -> np.ndarray: ...

    @property
    def width(self) -> int: ...

    @property
    def height(self) -> int: ...

    @property
    def quad(self) -> np.ndarray: ...

    @property
    def size_m(self) -> tuple[float, float]: ...

    @property
    def swatch(self) -> Swatch: ...

    @property
    def truth(self) -> np.ndarray: ...

    @property
    def visible(self) -> np.ndarray: ...

    @property
    def focal(self) -> float: ...

    @property
    def exif_focal(self) -> float: ...

    @property
    def plane_distance_m(self) -> float: ...

    @property
    def normal(self) -> np.ndarray: ...

    @property
    def edge_axes(self) -> tuple[np.ndarray, np.ndarray]: ...

    def truth_through(self, to_texel: np.ndarray) -> np.ndarray: ...


def quad(scene: Swappable) -> Geometry:
    """The quad (its outline refined against the photo, as the segmentation stage does), its size
    and the swatch's size: plane and scale exact."""
    mask = refine_edges(scene.photo, polygon_mask(scene.quad, scene.width, scene.height))
    plane = quad_plane(scene.quad, scene.width, scene.height)
    H = np.array(plane.homography.m).reshape(3, 3)
    tiling = tiling_from_sizes(*scene.size_m, *scene.swatch.size_m)
    normal = metrics.normal_of(H, plane.focal_length_px, scene.width, scene.height)
    return Geometry(
        mask,
        H,
        (tiling.repeats_u, tiling.repeats_v),
        scene.truth,
        metrics.angle_deg(normal, scene.normal),
        0.0,
        # The mask composited: the quad's outline keeps what stands on the surface (furniture,
        # a rug, a facade's windows), which the visible surface does not.
        metrics.iou(mask > 127, scene.visible),
    )


def _lines(scene: Swappable, mask: np.ndarray, exif: bool = True) -> Geometry | None:
    """The plane from the vanishing lines around a mask, the EXIF focal length (unless `exif` is
    false: a photo whose EXIF was stripped) and the plane's distance; its truth places the
    material by the same convention on the true plane."""
    width, height = scene.width, scene.height
    request = depth_pb.EstimatePlaneRequest(
        width=width,
        height=height,
        exif_focal_length_px=scene.exif_focal if exif else 0.0,
        plane_distance_meters=scene.plane_distance_m,
        surface=scene.spec.surface,  # named, as a swap names the surface it re-covers
    )
    try:
        plane = lines_plane(scene.photo, mask, request)
    except ValueError:
        return None
    H = np.array(plane.homography.m).reshape(3, 3)
    sw, sh = scene.swatch.size_m
    repeats = (plane.meters_per_unit / sw, plane.meters_per_unit / sh)
    # The truth: the same convention (the texture's origin under the mask's centroid, u along the
    # surface's edge nearer the photo's horizontal) on the true plane, focal length and scale.
    ys, xs = np.nonzero(mask > 127)
    ray = np.array([xs.mean() - width / 2, ys.mean() - height / 2, scene.focal])
    normal = scene.normal * np.sign(scene.normal @ ray)
    axis = texture_axis(*scene.edge_axes, normal, ray / scene.focal)
    H_true, side = plane_homography(normal, scene.focal, width, height, mask, axis=axis)
    th, tw = scene.swatch.image.shape[:2]
    true_repeats = (side * scene.plane_distance_m / sw, side * scene.plane_distance_m / sh)
    to_texel = np.diag([tw * true_repeats[0], th * true_repeats[1], 1.0]) @ np.linalg.inv(H_true)
    estimated = np.diag([tw * repeats[0], th * repeats[1], 1.0]) @ np.linalg.inv(H)
    centre = np.array([xs.mean(), ys.mean()])
    scale_error = metrics.texel_density(estimated, centre) / metrics.texel_density(to_texel, centre) - 1
    return Geometry(
        mask,
        H,
        repeats,
        scene.truth_through(to_texel),
        metrics.angle_deg(metrics.normal_of(H, plane.focal_length_px, width, height), scene.normal),
        scale_error,
        metrics.iou(mask > 127, scene.visible),
    )


def user_mask(scene: Swappable) -> np.ndarray:
    """A client's mask of the visible surface, anti-aliased, refined against the photo as the
    segmentation stage refines a client's mask."""
    mask = cv2.GaussianBlur(scene.visible.astype(np.uint8) * 255, (0, 0), 0.7)
    return refine_edges(scene.photo, mask)


class Seen(Protocol):
    """What the clicks are chosen from: the photo's size, the visible surface and what stands in
    front of it (a Scene, or another benchmark's room)."""

    @property
    def width(self) -> int: ...

    @property
    def height(self) -> int: ...

    @property
    def visible(self) -> np.ndarray: ...

    @property
    def occluder(self) -> np.ndarray: ...


def clicks(scene: Seen) -> tuple[tuple[float, float, float, float], np.ndarray, np.ndarray]:
    """What a user would click: a box around the visible surface, two points well inside it (lower
    left and lower right), one on the largest object in front of it."""
    scale = max(scene.width, scene.height) / 1024
    ys, xs = np.nonzero(scene.visible)
    pad = 10 * scale
    box = (float(xs.min()) - pad, float(ys.min()) - pad, float(xs.max()) + pad, float(ys.max()) + pad)
    size = int(31 * scale) | 1
    inner = cv2.erode(scene.visible.astype(np.uint8), np.ones((size, size), np.uint8))
    iy, ix = np.nonzero(inner)
    targets = [(np.percentile(ix, q), np.percentile(iy, 80)) for q in (15, 85)]
    positives = np.array(
        [(ix[i], iy[i]) for i in (int(np.argmin((ix - tx) ** 2 + (iy - ty) ** 2)) for tx, ty in targets)], float
    )
    count, labels, stats, _ = cv2.connectedComponentsWithStats(scene.occluder.astype(np.uint8))
    negatives = np.zeros((0, 2))
    if count > 1:
        biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        oy, ox = np.nonzero(cv2.erode((labels == biggest).astype(np.uint8), np.ones((5, 5), np.uint8)))
        if oy.size:
            k = int(np.argmin((ox - ox.mean()) ** 2 + (oy - oy.mean()) ** 2))
            negatives = np.array([[ox[k], oy[k]]], float)
    return box, positives, negatives


def mask_only(scene: Scene) -> Geometry | None:
    return _lines(scene, user_mask(scene))


def mask_without_focal(scene: Scene) -> Geometry | None:
    """The mask alone, no focal length: the lines give it or the default is assumed."""
    return _lines(scene, user_mask(scene), exif=False)


def points_only(scene: Scene) -> Geometry | None:
    """The clicks alone, the photo's EXIF focal length at hand as the segmentation stage reads it,
    and the surface named."""
    _, positives, negatives = clicks(scene)
    try:
        mask = select_surface(
            scene.photo, None, positives, negatives, focal_px=scene.exif_focal, surface=scene.spec.surface
        )
    except ValueError:
        return None
    return _lines(scene, mask)


def box_points(scene: Scene) -> Geometry | None:
    """A box and the clicks, the surface named (no segmentation model is deployed here, so the
    name changes nothing: this is what the stage does without one)."""
    box, positives, negatives = clicks(scene)
    try:
        mask = select_surface(scene.photo, box, positives, negatives, focal_px=scene.exif_focal)
    except ValueError:
        return None
    return _lines(scene, mask)


MODES: dict[str, Callable[[Scene], Geometry | None]] = {
    "quad": quad,
    "mask + focal": mask_only,
    "mask, no focal": mask_without_focal,
    "points only": points_only,
    "box + points": box_points,
}
