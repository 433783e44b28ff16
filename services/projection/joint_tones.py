"""Tones of tiles larger than the light filter's reach, read from the steps across their joints.

A square tile several reaches wide leaves the bilateral filter nothing to average its tone with in
any direction: the filter's light follows each tile's tone, and the grid less that light shows
little of it. Across a joint the light is continuous and the tone steps, so each element's offset
is solved from the steps to its neighbours (weighted least squares over the elements, weakly
anchored to the offsets against the filter's light, steps off the solution dropped: a light's edge
along a joint), and what neighbouring elements share over two element lengths is left in the light
(the steps' drift, the light's gradient integrated across joints). `elements.tones` takes these
offsets where its courses' elements are tall (`elements._TALL_REACHES`).
"""

from __future__ import annotations

import cv2
import numpy as np

from services.projection.robust import robust_means

# A step across a joint is read, along each row and column crossing it, between the _BAND cells
# either side nearest it (the least of the light's slope between them), where the next element's
# cells start at most _STEP_FAR cells on (the joint's cleared rows and columns, elements._split, lie
# between); from this many such lines at least.
_BAND = 3
_STEP_FAR = 7
_LEAST_CROSSINGS = 2
# The steps' least squares is anchored, this weakly against the steps, to the offsets read against
# the filter's light (which do not drift); a step off the solution by over 3 robust deviations (and
# _STEP_OUTLIER) is a light's edge along the joint and dropped, _STEP_ROUNDS times.
_ANCHOR = 0.05
_STEP_OUTLIER = 0.03
_STEP_ROUNDS = 3
# Solved to this share of the right-hand side's (preconditioned) norm: offsets to about 1e-4, far
# below a tone's step; at most _SOLVE_MOST iterations (judge40's and make quality's tiles take 13-45).
_SOLVE_TOLERANCE = 1e-4
_SOLVE_MOST = 200
# Tones are each element's own: whatever the offsets share over this many elements' lengths (a
# Gaussian) is the steps' drift or the light's gradient integrated across joints, and is left in
# the light (without it, judge40's head-on subway wall lost 2.6 dB to a broad false shadow).
_TONES_BROAD = 2.0


def _joint_steps(
    residual: np.ndarray, labels: np.ndarray, used: np.ndarray, hard: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The steps of the residual across the joints between used elements, both ways along the grid:
    per pair of elements (lower label, higher label), the robust mean over the lines crossing their
    joint of the higher's cells less the lower's beside it (_crossings), and how many lines. Cells
    on the light's hard steps are left out (a sun patch's edge along a joint is a step of the
    light)."""
    known = np.where(used[labels] & ~hard, labels, 0)
    across = (_crossings(known, residual), _crossings(known.T, residual.T))
    first, second, step = (np.concatenate(part) for part in zip(*across, strict=True))
    count = used.size
    pairs, which = np.unique(np.minimum(first, second) * count + np.maximum(first, second), return_inverse=True)
    steps = robust_means(np.where(first < second, step, -step), which, pairs.size)
    counts = np.bincount(which, minlength=pairs.size).astype(np.float64)
    kept = counts >= _LEAST_CROSSINGS
    return pairs[kept] // count, pairs[kept] % count, steps[kept], counts[kept]


def _crossings(known: np.ndarray, residual: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The joints crossed along the rows: where an element's run ends and the next known cell, at
    most _STEP_FAR on, is another element's. Per crossing, its elements (first, second) and the
    step of the residual from the first's _BAND cells before the joint to the second's after it.
    Only the crossings' cells are read (the grid itself is scanned once)."""
    rows, cols = np.nonzero((known[:, :-1] > 0) & (known[:, :-1] != known[:, 1:]))
    last = known.shape[1] - 1
    first = known[rows, cols]
    ahead = known[rows[:, None], np.minimum(cols[:, None] + np.arange(1, _STEP_FAR + 1), last)]
    skip = 1 + np.argmax(ahead > 0, axis=1)
    second = ahead[np.arange(rows.size), skip - 1]
    crossed = (second > 0) & (second != first)
    rows, cols, skip, first, second = rows[crossed], cols[crossed], skip[crossed], first[crossed], second[crossed]
    # The bands: cells of the first back from its end, of the second on from its start (those past
    # the grid's edges are left out).
    back = cols[:, None] - np.arange(_BAND)
    on = (cols + skip)[:, None] + np.arange(_BAND)
    back_at, on_at = rows[:, None], np.minimum(on, last)
    mine = (back >= 0) & (known[back_at, back] == first[:, None])
    theirs = (on <= last) & (known[back_at, on_at] == second[:, None])
    before = (residual[back_at, back] * mine).sum(axis=1) / np.maximum(mine.sum(axis=1), 1)
    after = (residual[back_at, on_at] * theirs).sum(axis=1) / np.maximum(theirs.sum(axis=1), 1)
    return first.astype(np.int64), second.astype(np.int64), (after - before).astype(np.float64)


def _joint_offsets(
    residual: np.ndarray, labels: np.ndarray, used: np.ndarray, hard: np.ndarray, anchor: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float]:
    """Each used element's offset from the steps across its joints (_joint_steps), by weighted least
    squares over the elements, weakly anchored to `anchor` (the offsets against the filter's light),
    steps far off the solution dropped; which elements the steps reached; and the steps' misfit (the
    robust deviation of each step from the offsets' difference)."""
    lower, upper, steps, counts = _joint_steps(residual, labels, used, hard)
    linked = np.zeros_like(used)
    linked[lower] = linked[upper] = True
    index = np.flatnonzero(linked)
    if index.size == 0:
        return anchor, linked, 0.0
    at = np.zeros(used.size, np.int64)
    at[index] = np.arange(index.size)
    lo, hi, n = at[lower], at[upper], index.size
    weights = np.sqrt(counts)
    # Anchored in proportion to the steps' weight per element, so the anchor's share does not
    # depend on how many joints an element has.
    anchoring = _ANCHOR * float(weights.sum()) / n
    solution = anchor[index]
    for _ in range(_STEP_ROUNDS):
        solution = _anchored_solve(lo, hi, weights, steps, anchoring, anchor[index], solution)
        off = np.abs(solution[hi] - solution[lo] - steps)
        weights = np.where(off > max(3 * 1.4826 * float(np.median(off)), _STEP_OUTLIER), 0.0, np.sqrt(counts))
    offsets = anchor.copy()
    offsets[index] = solution
    return offsets, used & linked, 1.4826 * float(np.median(off))


def _anchored_solve(
    lo: np.ndarray,
    hi: np.ndarray,
    weights: np.ndarray,
    steps: np.ndarray,
    anchoring: float,
    anchor: np.ndarray,
    start: np.ndarray,
) -> np.ndarray:
    """The x minimising sum(weights * (x[hi] - x[lo] - steps)^2) + anchoring * |x - anchor|^2: the
    normal equations (the joints' weighted Laplacian plus anchoring) by conjugate gradients from
    `start`, preconditioned by their diagonal. Each product is two sums over the joints, so the cost
    grows with the joints, not as a dense matrix's with the square of the elements (a mosaic's
    thousands) and its solve's with the cube."""
    n = anchor.size
    diagonal = anchoring + np.bincount(lo, weights, n) + np.bincount(hi, weights, n)

    def normal(x: np.ndarray) -> np.ndarray:
        flow = weights * (x[lo] - x[hi])
        return anchoring * x + np.bincount(lo, flow, n) - np.bincount(hi, flow, n)

    rhs = anchoring * anchor + np.bincount(hi, weights * steps, n) - np.bincount(lo, weights * steps, n)
    solution = start.astype(np.float64)
    residual = rhs - normal(solution)
    scaled = residual / diagonal
    direction = scaled.copy()
    product = float(residual @ scaled)
    goal = (_SOLVE_TOLERANCE**2) * float(rhs @ (rhs / diagonal))
    for _ in range(_SOLVE_MOST):
        if product <= goal:
            break
        image = normal(direction)
        step = product / float(direction @ image)
        solution += step * direction
        residual -= step * image
        scaled = residual / diagonal
        product, last = float(residual @ scaled), product
        direction = scaled + (product / last) * direction
    return solution


def shared_part(offsets: np.ndarray, labels: np.ndarray, used: np.ndarray, sigma: float) -> np.ndarray:
    """Per element, the mean over its cells of the used elements' offsets blurred by a Gaussian
    (cells): what neighbouring elements share, not an element's own tone."""
    weight = used.astype(np.float32)[labels]
    weighted = np.where(used, offsets, 0.0).astype(np.float32)[labels]
    # Blurred on a copy reduced to about sigma / 3 a cell, at most 8 (an element's offset is one
    # value over many cells), and the blur enlarged back: at full size the wide kernel took ~90 ms
    # on a 512 grid; reduced further, a head-on subway wall lost 0.4 dB more.
    rows, cols = labels.shape
    reduce = int(max(1, min(8, sigma // 3)))
    small = (max(1, cols // reduce), max(1, rows // reduce))
    total, share = (
        cv2.GaussianBlur(cv2.resize(plane, small, interpolation=cv2.INTER_AREA), (0, 0), sigma / reduce)
        for plane in (weighted, weight)
    )
    shared = cv2.resize(total / np.maximum(share, np.float32(1e-6)), (cols, rows), interpolation=cv2.INTER_LINEAR)
    flat = labels.ravel()
    cells = np.maximum(np.bincount(flat, minlength=offsets.size), 1)
    return np.asarray(np.bincount(flat, shared.ravel(), offsets.size) / cells)


def joint_tones(
    residual: np.ndarray,
    labels: np.ndarray,
    used: np.ndarray,
    hard: np.ndarray,
    anchor: np.ndarray,
    lengths: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, float]:
    """The used elements' own tones (log, per label) from the steps of `residual` (the grid less
    the filter's light) across their joints, less what neighbours share over _TONES_BROAD times
    the typical element's length (`lengths`: per label, cells); which elements the steps reached;
    and the steps' misfit, the reading's own error (`hard`: cells on or beside the light's hard
    steps, left out; `anchor`: the offsets against the filter's light)."""
    offsets, reached, misfit = _joint_offsets(residual, labels, used, hard, anchor)
    if reached.any():
        broad = _TONES_BROAD * float(np.median(lengths[reached]))
        offsets = offsets - shared_part(offsets, labels, reached, broad)
    return offsets, reached, misfit
