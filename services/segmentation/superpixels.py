"""Superpixels (SLIC) and their adjacency graph, in numpy: OpenCV's contrib SLIC is not in the
headless wheel.

SLIC (Achanta et al.) clusters pixels in colour and position. Each pixel here only considers the
centres of its own grid cell and the eight around it, which is what the original's 2S search window
amounts to and lets every step run on whole blocks of the image at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Superpixels:
    """A label image and the graph of labels that touch (4-neighbourhood)."""

    labels: np.ndarray  # (h, w) int64, 0..count-1 (some labels may be empty)
    count: int
    sizes: np.ndarray  # pixels per label (float64, empty ones 0)
    first: np.ndarray  # edges: labels that touch, first < second
    second: np.ndarray

    def mean(self, values: np.ndarray) -> np.ndarray:
        """The mean of a per-pixel map (h, w) over each superpixel (0 for empty ones)."""
        sums = np.bincount(self.labels.ravel(), values.ravel().astype(np.float64), minlength=self.count)
        return np.asarray(sums / np.maximum(self.sizes, 1.0))

    def at(self, points: np.ndarray, scale: float) -> np.ndarray:
        """The labels under points (N, 2) given in a frame `scale` times larger (clipped inside)."""
        height, width = self.labels.shape
        xs = np.clip(np.round(points[:, 0] * scale).astype(np.int64), 0, width - 1)
        ys = np.clip(np.round(points[:, 1] * scale).astype(np.int64), 0, height - 1)
        return np.asarray(self.labels[ys, xs])

    def neighbour_mean(self, values: np.ndarray) -> np.ndarray:
        """Each superpixel's (count, k) values averaged with its neighbours', weighted by size: a
        description of its surroundings, which bridges thin parts such as joints."""
        weights = self.sizes[:, None]
        total = values * weights
        norm = self.sizes.copy()
        np.add.at(total, self.first, values[self.second] * weights[self.second])
        np.add.at(total, self.second, values[self.first] * weights[self.first])
        np.add.at(norm, self.first, self.sizes[self.second])
        np.add.at(norm, self.second, self.sizes[self.first])
        return np.asarray(total / np.maximum(norm, 1.0)[:, None])


def slic(image: np.ndarray, step: int, compactness: float = 10.0, iterations: int = 3) -> Superpixels:
    """Superpixels of about step x step pixels from a (h, w, c) float32 image (CIELab for colour);
    compactness weighs position against colour (10 suits 8-bit Lab)."""
    height, width, channels = image.shape
    rows, cols = -(-height // step), -(-width // step)
    padded_h, padded_w = rows * step, cols * step
    padded = np.pad(image.astype(np.float32), ((0, padded_h - height), (0, padded_w - width), (0, 0)), mode="edge")
    ys, xs = np.mgrid[0:padded_h, 0:padded_w].astype(np.float32)
    spatial = np.float32(compactness / step)
    # Position scaled so that a plain squared distance weighs it against colour.
    features = np.concatenate([padded, (ys * spatial)[..., None], (xs * spatial)[..., None]], axis=2)
    blocks = features.reshape(rows, step, cols, step, channels + 2)
    centres = blocks.mean(axis=(1, 3))
    present = np.pad(np.ones((rows, cols), bool), 1)
    far = np.float32(np.inf)
    offsets = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    cell_y = np.arange(rows)[:, None, None, None]
    cell_x = np.arange(cols)[None, None, :, None]
    labels = np.zeros((rows, step, cols, step), np.int64)
    for _ in range(iterations):
        around = np.pad(centres, ((1, 1), (1, 1), (0, 0)))
        best = np.full((rows, step, cols, step), far, np.float32)
        choice = np.zeros((rows, step, cols, step), np.int8)
        for index, (dy, dx) in enumerate(offsets):
            centre = around[1 + dy : 1 + dy + rows, 1 + dx : 1 + dx + cols][:, None, :, None, :]
            diff = blocks - centre
            distance = np.einsum("abcdk,abcdk->abcd", diff, diff)
            exists = present[1 + dy : 1 + dy + rows, 1 + dx : 1 + dx + cols][:, None, :, None]
            better = exists & (distance < best)
            best = np.where(better, distance, best)
            choice[better] = index
        labels = (cell_y + choice // 3 - 1) * cols + (cell_x + choice % 3 - 1)
        flat = labels.ravel()
        counts = np.bincount(flat, minlength=rows * cols).astype(np.float32)
        sums = np.stack(
            [np.bincount(flat, blocks[..., k].ravel(), minlength=rows * cols) for k in range(channels + 2)], axis=1
        )
        filled = counts > 0
        moved = centres.reshape(-1, channels + 2).copy()
        moved[filled] = (sums[filled] / counts[filled, None]).astype(np.float32)
        centres = moved.reshape(rows, cols, channels + 2)
    label_image = labels.reshape(padded_h, padded_w)[:height, :width]
    return graph_of(label_image, rows * cols)


def graph_of(labels: np.ndarray, count: int) -> Superpixels:
    """The adjacency graph of a label image."""
    a = np.concatenate([labels[:, :-1].ravel(), labels[:-1, :].ravel()])
    b = np.concatenate([labels[:, 1:].ravel(), labels[1:, :].ravel()])
    differ = a != b
    low, high = np.minimum(a[differ], b[differ]), np.maximum(a[differ], b[differ])
    keys = np.unique(low * count + high)
    sizes = np.bincount(labels.ravel(), minlength=count).astype(np.float64)
    return Superpixels(labels, count, sizes, keys // count, keys % count)
