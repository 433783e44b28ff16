"""The old pattern's elements (planks, long blocks) and their own tones, on the rectified grid.

The light's bilateral filter (shading.py) averages a tile's or a block's tone away because its
reach spans several of them. A plank is longer: 0.6-1.6 m against a reach of about 0.25 m, so
along it there is nothing else to average with, and each plank's tone stays in the light as a
streak as long as the plank (make quality's wood floor: most of its light's error). A bond laid in
courses shows its structure on the grid: the joints between courses are straight lines repeating
across them, and each element's ends are short joints across its course. Found from that
structure (not from a threshold on each cell, which a wood's grain passes as readily as its
joints), each element long enough to escape the filter gets an offset: the robust mean of the
grid less the filter's light over it. Only where enough elements are that long, and their offsets
spread like the tones of a laid material, are they taken out; below that they are noise and the
light's own detail (another renderer's planks, whose tones the filter already averages, and make
quality's tiled scenes but the 12 MP one). A plank's tone is its own, so what neighbouring planks'
offsets share (a soft shadow the filter's light missed, read plank by plank) does not count.

Ashlar's courses do not repeat (make quality's cladding: 0.22-0.45 m high at random), so its
profile has no period; but the mortar between courses runs the whole width, so the courses are
found where that profile peaks strongly and the line answers along most of its length. Its blocks
are no longer than the filter's reach, but their tones are far apart (13 %), and the filter's
range keeps a fifth to a third of a strongly off block as light: every block's tone that stands
off is taken out. A window's mullions cast shadows that run the width as well, and a sun patch's
edges cut the "courses" between them into "blocks" whose offsets are the filter's error beside
the patch's edge; but such a shadow is wider than the 5 x 5 median's window, which keeps most of
its depth, while mortar is thin and the median takes it out.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import cv2
import numpy as np

from services.projection.joint_tones import joint_tones, shared_part
from services.projection.robust import robust_means

# A course repeats with this strength at least (the autocorrelation of the line response's profile
# across the courses, 1 at lag 0), and at least this many cells apart (a course's ends are found
# from its interior, which then has a few rows).
_COURSE_STRENGTH = 0.3
_MIN_COURSE = 8
# The profile is detrended by a box this many cells long (the light's own variation across courses).
_DETREND = 31
# An element's end: the line response over the course's rows this many robust deviations above its
# median.
_END_DEVIATIONS = 3.0
# Elements whose tones are taken out: this many cells at least, and at least this many of the
# filter's reaches long along the course (shorter ones the filter averages itself).
_MIN_CELLS = 30
_MIN_REACHES = 2.0
# The offsets are taken out only when at least this many elements are long enough to tell how they
# spread, and they spread this much (log, robust deviation): the planks of make quality's wood
# 0.065 and its 12 MP tiles 0.034; its other floors and walls 0.015 at most (the worn tiles have
# two elements long enough), another renderer's 28 views 0.011 at most.
_MIN_ELEMENTS = 8
_MIN_SPREAD = 0.025
# A joint between two elements takes its neighbours' offsets, averaged over this Gaussian (cells).
_JOINT_FILL = 1.5
# Planks' tones are each plank's own: what neighbouring elements' offsets share over this many
# reaches (a Gaussian) is the light's (a soft shadow beside an object, read plank by plank), and
# the offsets count only where they spread beyond it (_MIN_SPREAD). judge40's brick photo on a wall
# beside two counters spread 0.014 beyond it (its offsets were mostly the counters' soft shadows:
# taking them out lost 1 dB), its wood floors and wall 0.041-0.094.
_SHARED_REACHES = 2.0
# Elements at least this many reaches across their course as well (square tiles larger than the
# reach) leave the filter nothing to average their tone with in any direction: its light follows
# each tile's tone, and the grid less that light shows little of it (judge40's 0.6 m tiles: a spread
# of 0.015 against 0.07 laid). Their offsets are read from the steps across their joints instead
# (joint_tones.py), where the light is continuous and the tones step. Planks (0.3-0.8 reaches
# across) keep the offsets against the light, which averages across their courses.
_TALL_REACHES = 1.0
# Courses that do not repeat (ashlar): a line between them is a peak of the profile across them
# (three rows summed: a joint may straddle two) this many robust deviations above its median and
# at least _LINE_LEAST (log) strong, that answers in at least _LINE_SHARE of its columns (a mortar
# line runs the whole width; grain and a rubble wall's joints answer in about half); at least
# _MIN_LINES of them (three courses). Measured on make quality's cladding (lines 4-30 deviations
# above the profile, in 0.7-0.9 of the columns) against its plain surfaces and random rubble built
# for the purpose, which have none. A blind's narrow shadows are such lines too: the plain wall
# between them has no tones that spread (_MIN_SPREAD), and nothing is taken out.
_LINE_DEVIATIONS = 4.0
_LINE_LEAST = 0.02
_LINE_SHARE = 0.65
_MIN_LINES = 4
# The blocks of such courses whose offsets stand off less than this (log) are left to the filter,
# which averages them with their neighbours already (taking them out as well cost the 12 MP stone
# 0.6 dB: they are as much the light's own detail).
_LEAST_OFFSET = 0.05
# Such lines are thin (mortar) where the 5 x 5 median keeps less than this share of their depth (the
# median's level _BESIDE rows either side, clear of its window, less its level on the line, against
# that plus the line's response), in the median over the lines: make quality's cladding 0.45-0.47,
# a window's mullion shadows 5-6 cells wide under a sun patch 0.70-0.91 (a bar wider than the
# window keeps its depth through the median; cut at the patch's edges it made "blocks" of the
# plain wall beside it, 0.15-0.7 dB lost on such scenes).
_KEPT_SHARE = 0.6
_BESIDE = 4
_SQUARE5 = np.ones((5, 5), np.uint8)


@dataclass(frozen=True)
class Elements:
    """A bond's elements on the grid: labels (0 on joints and off the surface, 1.. per element),
    each element's length along its course (cells; index 0 unused), and whether the courses were
    found as lines that do not repeat (ashlar; tones then treats every element alike)."""

    labels: np.ndarray  # int32, the grid's shape
    lengths: np.ndarray  # int64
    irregular: bool = False


def find(log_l: np.ndarray, smoothed: np.ndarray, valid: np.ndarray) -> Elements | None:
    """The elements of a pattern laid in courses along the grid's rows or columns, from the grid's
    log luminance and its 5 x 5 median (thin dark lines are where the median is above the grid),
    or None when neither axis shows courses, repeating or not (_irregular)."""
    lines = np.where(valid, smoothed - log_l, np.float32(0)).astype(np.float32)
    # Courses along the rows: the profile runs down the rows. For the columns, transposed (once
    # for both searches).
    axes = ((lines, valid), (np.ascontiguousarray(lines.T), np.ascontiguousarray(valid.T)))
    best: tuple[float, Elements] | None = None
    for along, (response, inside) in zip((1, 0), axes, strict=True):
        found = _courses(response, inside)
        if found is None:
            continue
        strength, labels, lengths = found
        if best is None or strength > best[0]:
            best = (strength, Elements(labels if along == 1 else np.ascontiguousarray(labels.T), lengths))
    return _irregular(axes, smoothed) if best is None else best[1]


def tones(
    values: np.ndarray, light: np.ndarray, elements: Elements, reach: float, hard: np.ndarray | None = None
) -> np.ndarray | None:
    """The elements' own tones as a field over the grid (log, centred on the typical element; joints
    take their neighbours'), for the values the filter made `light` of with this reach (`hard`: the
    cells on or beside the light's hard steps); None when the tones do not spread as a laid
    material's do (_MIN_SPREAD; planks' beyond what neighbouring planks share, _SHARED_REACHES).
    Of courses that repeat, the elements two reaches long, or every element where they are tall as
    well (_TALL_REACHES: read from their joints); of irregular ones, every element whose offset
    stands off (_LEAST_OFFSET)."""
    labels = elements.labels
    count = elements.lengths.size
    cells = np.bincount(labels.ravel(), minlength=count)
    used = cells >= _MIN_CELLS
    used[0] = False
    tall = not elements.irregular and _tall(cells, elements.lengths, used) >= _TALL_REACHES * reach
    if not elements.irregular and not tall:
        used &= elements.lengths >= _MIN_REACHES * reach
    if np.count_nonzero(used) < _MIN_ELEMENTS:
        return None
    inside = used[labels]
    residual = values - light
    offsets = robust_means(residual[inside].astype(np.float64), labels[inside], count)
    misfit = 0.0
    if not elements.irregular and not tall and _own_spread(offsets, labels, used, reach) < _MIN_SPREAD:
        return None
    if tall:
        on_steps = np.zeros(labels.shape, bool) if hard is None else hard
        offsets, used, misfit = joint_tones(residual, labels, used, on_steps, offsets, elements.lengths)
        if np.count_nonzero(used) < _MIN_ELEMENTS:
            return None
    # Offsets read from the joints spread by their reading's error as well (the steps' misfit: the
    # light's own detail across a joint, a tile's texture beside it): only what they spread beyond
    # it counts as tones. Tiles laid at a spread of 0.02 read 0.027-0.029 with a misfit of
    # 0.017-0.019, and taking them out lost 0.35-0.76 dB; judge40's and make quality's read
    # 0.033-0.074 past a misfit of 0.011-0.024.
    spread = 1.4826 * float(np.median(np.abs(offsets[used] - np.median(offsets[used]))))
    if np.sqrt(max(spread**2 - misfit**2, 0.0)) < _MIN_SPREAD:
        return None
    # Centred on the typical cell's element (the median weighted by cells), so the joints and the
    # elements left as they are keep their level beside them.
    order = np.flatnonzero(used)[np.argsort(offsets[used], kind="stable")]
    typical = offsets[order[np.searchsorted(np.cumsum(cells[order]), cells[order].sum() / 2)]]
    offsets = offsets - typical
    if elements.irregular:
        used &= np.abs(offsets) >= _LEAST_OFFSET
    offsets = np.where(used, offsets, 0.0).astype(np.float32)
    field = offsets[labels]
    weight = used[labels].astype(np.float32)
    total = cv2.GaussianBlur(weight, (0, 0), _JOINT_FILL)
    beside = cv2.GaussianBlur(field * weight, (0, 0), _JOINT_FILL) / np.maximum(total, np.float32(1e-6))
    return np.where(weight > 0, field, np.where(total > 0.05, beside, np.float32(0))).astype(np.float32)


def _own_spread(offsets: np.ndarray, labels: np.ndarray, used: np.ndarray, reach: float) -> float:
    """How the used elements' offsets spread (log, robust deviation) beyond what neighbouring
    elements share (_SHARED_REACHES)."""
    own = (offsets - shared_part(offsets, labels, used, _SHARED_REACHES * reach))[used]
    return 1.4826 * float(np.median(np.abs(own - np.median(own))))


def _tall(cells: np.ndarray, lengths: np.ndarray, used: np.ndarray) -> float:
    """The elements' typical extent across their course (cells: their area over their length)."""
    return float(np.median(cells[used] / np.maximum(lengths[used], 1))) if used.any() else 0.0


def _courses(lines: np.ndarray, valid: np.ndarray) -> tuple[float, np.ndarray, np.ndarray] | None:
    """Courses along the rows of a line response: how strongly they repeat, the elements' labels
    and their lengths along the rows, or None."""
    across = valid.sum(axis=1)
    profile = np.where(across > 0, (lines * valid).sum(axis=1) / np.maximum(across, 1), 0.0)
    period, strength = _period(profile)
    if period < _MIN_COURSE or strength < _COURSE_STRENGTH:
        return None
    labels, lengths = _split(lines, valid, _peaks_apart(profile, 0.6 * period))
    return strength, labels, lengths


def _split(lines: np.ndarray, valid: np.ndarray, joints: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """The elements' labels and lengths along the rows, of the courses between the joints (rows):
    each course ends its elements where the line response over its rows stands out."""
    rows, cols = lines.shape
    labels = np.zeros((rows, cols), np.int32)
    lengths = [0]
    for above, below in pairwise(joints):
        top, bottom = above + 2, below - 1  # the course's rows clear of its joints
        if bottom - top < 2:
            continue
        inside = valid[top:bottom]
        rows_here = inside.sum(axis=0)
        present = rows_here > 0
        if not present.any():
            continue
        along = np.where(present, (lines[top:bottom] * inside).sum(axis=0) / np.maximum(rows_here, 1), 0.0)
        median = float(np.median(along[present]))
        deviation = max(1.4826 * float(np.median(np.abs(along[present] - median))), 1e-4)
        ends = _local_peaks(along) & (along > median + _END_DEVIATIONS * deviation)
        bounds = [-2, *np.flatnonzero(ends).tolist(), cols + 1]
        for start, stop in pairwise(bounds):
            left, right = max(0, start + 2), min(cols, stop - 1)
            if right - left < 2:
                continue
            cells = inside[:, left:right]
            columns = np.flatnonzero(cells.any(axis=0))
            if columns.size == 0:
                continue
            labels[top:bottom, left:right] = np.where(cells, len(lengths), 0)
            lengths.append(int(columns[-1] - columns[0]) + 1)
    return labels, np.array(lengths, np.int64)


def _irregular(
    axes: tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]], smoothed: np.ndarray
) -> Elements | None:
    """The elements of courses that do not repeat, along the rows or the columns, from the line
    response and the surface (`axes`: as they are, and transposed; dark lines positive; light
    mortar is looked for as well, negated) and the grid's 5 x 5 median, or None where no axis and
    sign show _MIN_LINES lines (_lines) that are thin (_thin)."""
    wides = (smoothed, np.ascontiguousarray(smoothed.T))
    best: tuple[float, np.ndarray, np.ndarray, list[int], int] | None = None
    for along, (response, valid), wide in zip((1, 0), axes, wides, strict=True):
        clear = cv2.erode(valid.astype(np.uint8), _SQUARE5) > 0  # the median's window on the surface
        for strength, joints, sign in _lines(response, clear):
            if (best is None or strength > best[0]) and _thin(response, wide, clear, joints, sign):
                best = (strength, np.float32(sign) * response, valid, joints, along)
    if best is None:
        return None
    _, response, inside, joints, along = best
    labels, lengths = _split(response, inside, joints)
    return Elements(labels if along == 1 else np.ascontiguousarray(labels.T), lengths, irregular=True)


def _lines(response: np.ndarray, clear: np.ndarray) -> list[tuple[float, list[int], float]]:
    """The lines along the rows of a response that run the width of the surface (see
    _LINE_DEVIATIONS), of either sign (1: dark lines, -1: light ones): for each sign that shows
    _MIN_LINES of them, their summed strength, their rows and the sign."""
    values = np.where(clear, response, np.float32(0))
    summed = values[:-2] + values[1:-1] + values[2:]
    inside = clear[:-2] & clear[1:-1] & clear[2:]
    cells = np.count_nonzero(inside, axis=1)
    # A row counts where a fifth of the grid's width (and 20 cells) is on the surface; four
    # courses of _MIN_COURSE rows at least.
    enough = cells >= max(20, 0.2 * response.shape[1])
    if np.count_nonzero(enough) < 4 * _MIN_COURSE:
        return []
    per_row = np.maximum(cells, 1)
    mean = np.where(enough, (summed * inside).sum(axis=1) / per_row, 0.0)
    found = []
    for sign, along_sign in ((1.0, summed > 0), (-1.0, summed < 0)):
        profile = sign * mean
        share = np.where(enough, np.count_nonzero(along_sign & inside, axis=1) / per_row, 0.0)
        median = float(np.median(profile[enough]))
        deviation = max(1.4826 * float(np.median(np.abs(profile[enough] - median))), 1e-4)
        strong = (profile > _LINE_LEAST) & (profile > median + _LINE_DEVIATIONS * deviation) & (share >= _LINE_SHARE)
        rows = _peaks_apart(np.where(strong, profile, 0.0), _MIN_COURSE)
        if len(rows) >= _MIN_LINES:  # summed row i is rows i..i+2
            found.append((float(profile[rows].sum()), [row + 1 for row in rows], sign))
    return found


def _thin(response: np.ndarray, wide: np.ndarray, clear: np.ndarray, rows: list[int], sign: float) -> bool:
    """Whether the lines along these rows (of this sign) are thin: the share of their depth the
    5 x 5 median keeps, in the median over the lines, under _KEPT_SHARE (see there)."""
    shares = []
    for row in rows:
        if row < _BESIDE or row + _BESIDE >= wide.shape[0]:
            continue
        inside = clear[row] & clear[row - _BESIDE] & clear[row + _BESIDE]
        if not inside.any():
            continue
        kept = sign * ((wide[row - _BESIDE] + wide[row + _BESIDE]) / 2 - wide[row])[inside]
        taken = sign * (response[row - 1] + response[row] + response[row + 1])[inside]
        kept_mean = max(float(kept.mean()), 0.0)
        shares.append(kept_mean / max(kept_mean + float(taken.mean()), 1e-6))
    return bool(shares) and float(np.median(shares)) < _KEPT_SHARE


def _period(profile: np.ndarray) -> tuple[int, float]:
    """The profile's period (cells) and the strength of its autocorrelation there: the shortest lag
    whose peak is within 0.8 of the strongest (a multiple of the period peaks as high), or (0, 0)."""
    n = profile.size
    if n <= 4 * _MIN_COURSE:  # no course of _MIN_COURSE cells repeats four times
        return 0, 0.0
    detrended = profile - np.convolve(profile, np.ones(_DETREND) / _DETREND, mode="same")
    spectrum = np.fft.rfft(detrended, 2 * n)
    correlation = np.fft.irfft(spectrum * np.conj(spectrum))[:n]
    if correlation[0] <= 1e-12:
        return 0, 0.0
    correlation = correlation / correlation[0]
    lags = [
        lag
        for lag in range(4, n // 4)
        if correlation[lag] > correlation[lag - 1] and correlation[lag] >= correlation[lag + 1] and correlation[lag] > 0
    ]
    if not lags:
        return 0, 0.0
    top = max(float(correlation[lag]) for lag in lags)
    period = min(lag for lag in lags if correlation[lag] >= 0.8 * top)
    return period, float(correlation[period])


def _peaks_apart(profile: np.ndarray, spacing: float) -> list[int]:
    """The profile's positive local peaks, strongest first, each at least `spacing` from those
    kept, in order: the joints between courses, one per course however the period rounds."""
    candidates = np.flatnonzero(_local_peaks(profile) & (profile > 0))
    kept: list[int] = []
    for i in candidates[np.argsort(-profile[candidates], kind="stable")].tolist():
        if all(abs(i - j) >= spacing for j in kept):
            kept.append(i)
    return sorted(kept)


def _local_peaks(values: np.ndarray) -> np.ndarray:
    """Where a 1-D array is at least both its neighbours (its ends compared with one)."""
    before = np.concatenate([[-np.inf], values[:-1]])
    after = np.concatenate([values[1:], [-np.inf]])
    return np.asarray((values >= before) & (values >= after))
