"""The projection against independently rendered ground truth (supersampled, exact homography)."""

import math
import threading

import cv2
import numpy as np
import pytest

from devstack import scenes
from renderkit import homography, imaging
from services.projection import composite
from services.projection.composite import project_material
from services.projection.layouts import Layout, herringbone_texels, plank_ratio
from services.projection.light_colour import LightColour
from services.projection.shading import Shading
from services.projection.texture import (
    FRACTIONS,
    LOD_BIAS,
    LOD_STEP,
    PROBES,
    _footprint,
    _pack,
    build_mip_atlas,
    finest_blend,
    sample_surface,
    texel_transform,
)

REPEATS = (8.0, 10.0)


@pytest.fixture(scope="module")
def scene() -> scenes.Scene:
    return scenes.room_scene(768, 512)


@pytest.fixture(scope="module")
def swatch() -> np.ndarray:
    return scenes.plank_texture(256)


def in_surface(scene: scenes.Scene) -> np.ndarray:
    return cv2.erode(scene.floor_mask, np.ones((7, 7), np.uint8)) > 127


def test_swap_matches_ground_truth_inside_the_surface(scene: scenes.Scene, swatch: np.ndarray) -> None:
    mask = imaging.polygon_mask(scene.quad, 768, 512)
    out = project_material(scene.photo, swatch, mask, scene.homography, *REPEATS)
    truth = scenes.ground_truth_swap(scene, swatch, REPEATS)
    assert scenes.psnr(out, truth, in_surface(scene)) > 28.0
    outside = scene.floor_mask == 0
    outside &= cv2.dilate(scene.floor_mask, np.ones((9, 9), np.uint8)) == 0
    np.testing.assert_array_equal(out[outside], scene.photo[outside])


@pytest.mark.parametrize("mistake", ["transposed", "repeats", "shifted"])
def test_a_wrong_projection_fails_the_same_threshold(scene: scenes.Scene, swatch: np.ndarray, mistake: str) -> None:
    H = scene.homography.copy()
    repeats = REPEATS
    if mistake == "transposed":
        H[:, [0, 1]] = H[:, [1, 0]]
    elif mistake == "repeats":
        repeats = (REPEATS[0] * 1.3, REPEATS[1])
    else:
        H = np.array([[1, 0, 6], [0, 1, 0], [0, 0, 1]]) @ H
    out = project_material(scene.photo, swatch, imaging.polygon_mask(scene.quad, 768, 512), H, *repeats)
    truth = scenes.ground_truth_swap(scene, swatch, REPEATS)
    assert scenes.psnr(out, truth, in_surface(scene)) < 28.0


def test_shading_keeps_the_shadow(scene: scenes.Scene) -> None:
    flat = np.full((64, 64, 3), 160, np.uint8)
    out = project_material(scene.photo, flat, imaging.polygon_mask(scene.quad, 768, 512), scene.homography, 4, 4)
    shadow = out[int(0.78 * 512), int(0.62 * 768)].mean()
    lit = out[int(0.78 * 512), int(0.2 * 768)].mean()
    assert shadow < 0.8 * lit


def test_far_away_texture_is_filtered_not_aliased() -> None:
    """A fine checker seen at a grazing angle averages to grey instead of moire."""
    checker = ((np.indices((64, 64)).sum(0) % 2) * 255).astype(np.uint8)
    swatch = cv2.merge([checker] * 3)
    atlas = build_mip_atlas(swatch)
    quad = np.array([[300, 100], [340, 100], [630, 470], [10, 470]], float)
    from renderkit.homography import quad_homography

    T = texel_transform(quad_homography(quad), 40, 400, 0.0, 64, 64)
    colour, valid = sample_surface(atlas, T, 0, 100, 640, 40)
    far = colour[valid][:, 0]
    assert abs(float(far.mean()) - 0.5) < 0.08  # half the texels are white (1.0 linear), half black
    assert float(far.std()) < 0.12


# A checkerboard of 4-texel squares on a floor receding to a horizon just above the image.
CHECKER = (((np.indices((64, 64)) // 4).sum(0) % 2) * 255).astype(np.uint8)
GRAZING_QUAD = np.array([[300, 100], [340, 100], [630, 470], [10, 470]], float)
# Rows 110-170 of it: 4-20 texels per pixel across and 20-60 along, so the squares repeat faster
# than every two pixels either way. Nothing of them can show there but their average.
FAR_ROWS = (110, 60)


def high_frequencies(image: np.ndarray, valid: np.ndarray) -> float:
    """Mean absolute detail finer than a few pixels (what moire and shimmering are made of)."""
    detail = np.abs(image - cv2.GaussianBlur(image, (0, 0), 2.0))
    inner = cv2.erode(valid.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    return float(detail[inner].mean())


def test_a_grazing_checkerboard_averages_to_grey_without_false_detail() -> None:
    """Filtered, the far checkerboard is its average; point samples of the same texels alias into
    strong false detail (so the measure tells the two apart)."""
    from renderkit.homography import quad_homography

    T = texel_transform(quad_homography(GRAZING_QUAD), 10, 100, 0.0, 64, 64)
    top, rows = FAR_ROWS
    colour, valid = sample_surface(build_mip_atlas(cv2.merge([CHECKER] * 3)), T, 0, top, 640, rows)
    assert abs(float(colour[valid].mean()) - 0.5) < 0.02  # half the texels are white (1.0 linear)
    assert high_frequencies(colour[..., 0], valid) < 0.03
    xs, ys = np.meshgrid(np.arange(640.0), np.arange(top, top + rows, dtype=np.float64))
    w = T[2, 0] * xs + T[2, 1] * ys + T[2, 2]
    u = np.floor((T[0, 0] * xs + T[0, 1] * ys + T[0, 2]) / w).astype(np.int64)
    v = np.floor((T[1, 0] * xs + T[1, 1] * ys + T[1, 2]) / w).astype(np.int64)
    point_sampled = (CHECKER[v % 64, u % 64] / 255.0).astype(np.float32)
    assert high_frequencies(point_sampled, valid) > 0.4


def test_an_atlas_without_the_levels_a_surface_never_uses_samples_it_the_same() -> None:
    """Far from the camera the swatch's finest levels are never looked up: an atlas made without
    them (smaller, quicker to make) samples what the whole one does (to the rounding of a
    position to 1/32 texel, which depends on where a level lies in its atlas)."""
    from renderkit.homography import quad_homography

    swatch = scenes.plank_texture(256)
    T = texel_transform(quad_homography(GRAZING_QUAD), 10, 100, 0.0, 256, 256)
    top, rows = FAR_ROWS
    first = finest_blend(T, 0, top, 640, rows)
    assert first >= 2 * FRACTIONS
    pruned = build_mip_atlas(swatch, first=first)
    whole = build_mip_atlas(swatch)
    assert pruned.atlas.size < whole.atlas.size / 10
    np.testing.assert_allclose(
        sample_surface(pruned, T, 0, top, 640, rows)[0], sample_surface(whole, T, 0, top, 640, rows)[0], atol=1e-3
    )


def test_the_finest_blend_built_is_the_finest_a_receding_surface_looks_up() -> None:
    """finest_blend is never coarser than a blend the sampler picks for a pixel of the rectangle
    (its blocks' levels of detail, as sample_linear rounds them) and at most one blend finer; a
    swatch whose octave is only partly needed gets an atlas without that octave's finer blends,
    well under the whole one."""
    from renderkit.homography import quad_homography

    swatch = scenes.plank_texture(256)
    for quad, repeats in (
        (GRAZING_QUAD, (2.0, 8.0)),
        (np.array([[0, 0], [640, 0], [640, 480], [0, 480]], float), (5.2, 3.9)),
    ):
        T = texel_transform(quad_homography(quad), *repeats, 0.0, 256, 256)
        x0, y0, width, height = 0, 200, 640, 200
        centre = (LOD_STEP - 1) / 2 - LOD_STEP
        xs = (np.arange(-(-(width + 2 * LOD_STEP) // LOD_STEP)) * LOD_STEP + x0 + centre)[None, :]
        ys = (np.arange(-(-(height + 2 * LOD_STEP) // LOD_STEP)) * LOD_STEP + y0 + centre)[:, None]
        _, _, major2, minor2, _, _ = _footprint(T, xs, ys)
        lod = np.maximum(0.5 * np.log2(np.maximum(minor2, major2 / PROBES**2)) + LOD_BIAS, 0.0)
        looked_up = int(np.floor(lod * FRACTIONS + 0.5).min())
        first = finest_blend(T, x0, y0, width, height)
        assert looked_up - 1 <= first <= looked_up
    assert first % FRACTIONS, "the head-on view should need only some of its octave's blends"
    assert build_mip_atlas(swatch, first=first).atlas.size < 0.6 * build_mip_atlas(swatch).atlas.size


def test_a_box_reaching_past_the_horizon_does_not_ask_for_the_finest_blends() -> None:
    """Beyond the plane's horizon the level of detail is meaningless and, next to it, steep: a
    mask's box that reaches past it still gets the blends its surface looks up, not the whole
    atlas (the same as a box stopping short of the horizon)."""
    from renderkit.homography import quad_homography

    T = texel_transform(quad_homography(GRAZING_QUAD), 40, 400, 0.0, 1024, 1024)
    horizon = next(y for y in range(100) if T[2, 0] * 320 + T[2, 1] * y + T[2, 2] > 0)
    assert 40 < horizon < 100
    short = finest_blend(T, 0, 100, 640, 375)
    assert short >= 4 * FRACTIONS
    assert finest_blend(T, 0, horizon - 16, 640, 475 - horizon + 16) == short


@pytest.mark.parametrize("first", [0, 1, 2, 3, 5])
def test_the_atlas_places_every_blend_apart_inside_it(first: int) -> None:
    """The packing (the blends of a 1000 x 700 swatch from any blend on) overlaps nothing and
    stays inside the atlas."""
    sizes = [(1000, 700)]
    while min(sizes[-1]) > 1:
        sizes.append((max(1, (sizes[-1][0] + 1) // 2), max(1, (sizes[-1][1] + 1) // 2)))
    boxes = [(w + 4, h + 4) for j in range(first, (len(sizes) - 1) * FRACTIONS + 1) for w, h in [sizes[j // FRACTIONS]]]
    places, width, height = _pack(boxes)
    taken = np.zeros((height, width), np.uint8)
    for (x, y), (w, h) in zip(places, boxes, strict=True):
        assert min(x, y) >= 0 and x + w <= width and y + h <= height
        taken[y : y + h, x : x + w] += 1
    assert taken.max() == 1
    assert taken.sum() > 0.75 * taken.size  # little left empty


@pytest.mark.parametrize(
    ("shape", "first"),
    [((256, 256), 0), ((37, 91), 0), ((300, 7), 0), ((256, 192), 8), ((256, 256), 3), ((37, 91), 1), ((256, 192), 6)],
)
@pytest.mark.parametrize("shared", [False, True])
def test_every_blend_of_the_atlas_is_its_levels_mix_inside_a_wrapped_border(
    shape: tuple[int, int], first: int, shared: bool
) -> None:
    """Made alone or with a pool's threads (in parts: bands of rows of the finest octave), from
    any blend on (the finest one built may be made over its octave's level), each blend is its
    level mixed with the next level enlarged, made here one blend at a time, and its border
    repeats its opposite edges; the blends not built are looked up in the finest one built."""
    from concurrent.futures import ThreadPoolExecutor

    swatch = np.random.default_rng(5).integers(0, 256, (*shape, 3), dtype=np.uint8)
    with ThreadPoolExecutor(2) as pool:
        atlas = build_mip_atlas(swatch, first=first, pool=pool if shared else None)
    for j in range(first):
        np.testing.assert_array_equal(atlas.origin[j], atlas.origin[first])
        np.testing.assert_array_equal(atlas.size[j], atlas.size[first])
    levels = [imaging.srgb_to_linear(swatch)]
    while min(levels[-1].shape[:2]) > 1:
        h, w = levels[-1].shape[:2]
        levels.append(
            cv2.resize(levels[-1], (max(1, (w + 1) // 2), max(1, (h + 1) // 2)), interpolation=cv2.INTER_AREA)
        )
    for j in range(first, atlas.levels):
        k, t = divmod(j, atlas.fractions)
        expected = levels[k]
        if t:
            enlarged = cv2.resize(levels[k + 1], levels[k].shape[1::-1], interpolation=cv2.INTER_CUBIC)
            expected = np.maximum(
                cv2.addWeighted(levels[k], 1 - t / atlas.fractions, enlarged, t / atlas.fractions, 0), 0
            )
        x, y = (atlas.origin[j] + 0.5).astype(int)  # the blend's first texel
        h, w = expected.shape[:2]
        np.testing.assert_array_equal(atlas.atlas[y : y + h, x : x + w], expected)
        rows, cols = np.arange(-2, h + 2) % h, np.arange(-2, w + 2) % w
        np.testing.assert_array_equal(atlas.atlas[y - 2 : y + h + 2, x - 2 : x + w + 2], expected[rows][:, cols])


def test_straight_tiling_at_one_texel_a_pixel_repeats_the_swatch_exactly() -> None:
    """Seen head-on with texel centres on pixel centres, every pixel is its texel, across the
    swatch's edges too (the wrap)."""
    rng = np.random.default_rng(3)
    swatch = rng.integers(0, 255, (24, 40, 3), dtype=np.uint8)
    atlas = build_mip_atlas(swatch)
    # 5 x 4 tiles of 40 x 24 texels over 200 x 96 pixels; the image starts 7 texels into a tile.
    H = np.array([[200.0, 0, -7.5], [0, 96.0, -0.5], [0, 0, 1]])
    T = texel_transform(H, 5, 4, 0.0, 40, 24)
    colour, valid = sample_surface(atlas, T, 0, 0, 200, 96)
    expected = np.roll(np.tile(swatch, (4, 6, 1)), -7, axis=1)[:96, :200]
    assert valid.all()
    assert np.abs(imaging.linear_to_srgb(colour).astype(int) - expected).max() <= 1


@pytest.mark.parametrize("offset", [0.0, 0.5, 0.25])
def test_brick_layout_staggers_alternate_rows(offset: float) -> None:
    """Seen head-on at one texel per pixel, the surface is the swatch tiled with rows shifted."""
    rng = np.random.default_rng(7)
    swatch = rng.integers(0, 255, (32, 48, 3), dtype=np.uint8)
    atlas = build_mip_atlas(swatch)
    # The unit square spans 4x3 tiles of 48x32 pixels, so the texture maps 1:1 onto pixels; pixel
    # centres are at integer coordinates and texel i covers [i, i+1), hence the half-pixel shift.
    H = np.array([[192.0, 0, -0.5], [0, 96.0, -0.5], [0, 0, 1]])
    T = texel_transform(H, 4, 3, 0.0, 48, 32)
    colour, valid = sample_surface(atlas, T, 0, 0, 192, 96, Layout(row_offset=offset))
    got = imaging.linear_to_srgb(colour)
    shift = round(offset * 48)
    for row in range(3):
        band = got[row * 32 + 2 : row * 32 + 30, 8:184]
        shifted = np.roll(np.tile(swatch, (1, 5, 1)), -shift if row % 2 else 0, axis=1)
        expected = shifted[2:30, 8:184]
        assert np.abs(band.astype(int) - expected).mean() < 3, row
    assert valid.all()


def test_where_the_swatch_is_magnified_one_lookup_samples_what_two_do(monkeypatch: pytest.MonkeyPatch) -> None:
    """A swatch coarser than the photo (every pixel under a texel) needs no spread along the
    footprint: its probes coincide, so one lookup a pixel gives the bytes two gave; a footprint
    longer than a texel anywhere in the rectangle still gets two."""
    from renderkit.homography import quad_homography
    from services.projection import texture

    atlas = build_mip_atlas(scenes.plank_texture(64))
    H = quad_homography(np.array([[40, 30], [600, 20], [630, 460], [10, 470]], float))
    lookups: list[int] = []
    remap = cv2.remap

    def counted(*args: object, **kwargs: object) -> np.ndarray:
        lookups.append(1)
        return remap(*args, **kwargs)  # type: ignore[call-overload, no-any-return]

    monkeypatch.setattr(cv2, "remap", counted)
    magnified = texel_transform(H, 2.0, 2.0, 10.0, 64, 64)  # 4-8 pixels a texel
    colour = texture.sample_linear(atlas, magnified, 0, 0, 640, 480)
    out = np.empty((480, 640, 3), np.uint16)
    texture.sample_linear(atlas, magnified, 0, 0, 640, 480, out=out, scale=65535.0)
    assert len(lookups) == 2  # one a call
    # What two coinciding probes gave: their running mean, scaled into out.
    two = cv2.addWeighted(colour, 65535.0 / 2, colour, 65535.0 / 2, 0.0, dtype=cv2.CV_16U)
    np.testing.assert_array_equal(out, two)
    texture.sample_linear(atlas, texel_transform(H, 40.0, 40.0, 10.0, 64, 64), 0, 0, 640, 480)
    assert len(lookups) == 4


def test_anisotropic_sampling_keeps_receding_detail() -> None:
    """Lines running into the distance stay sharp where isotropic mip selection blurs them."""
    from renderkit.homography import quad_homography

    lines = np.zeros((64, 64), np.uint8)
    lines[:, :16] = 255  # one wide line per tile, running along v (into the distance)
    swatch = cv2.merge([lines] * 3)
    atlas = build_mip_atlas(swatch)
    quad = np.array([[200, 100], [440, 100], [630, 300], [10, 300]], float)
    H = quad_homography(quad)
    repeats = (3.0, 40.0)
    T = texel_transform(H, *repeats, 0.0, 64, 64)
    truth = scenes.sample_supersampled(swatch, H, repeats, 640, 300, factor=6)[110:200, 150:490]
    errors = {}
    for probes in (1, 2):
        colour, _ = sample_surface(atlas, T, 0, 0, 640, 300, probes=probes)
        errors[probes] = float(np.abs(colour[110:200, 150:490] - truth).mean())
    assert errors[2] < 0.8 * errors[1]


def test_an_object_on_the_surface_does_not_darken_the_light_around_it() -> None:
    from services.projection.shading import shading_field

    photo = np.full((200, 300, 3), 150, np.uint8)
    photo[80:120, 130:170] = 20  # a dark object standing on an evenly lit floor
    mask = np.full((200, 300), 255, np.uint8)
    shading = shading_field(photo, mask, sigma=12.0)
    ring = shading[70:130, 120:180].copy()
    ring[10:50, 10:50] = np.nan
    assert abs(float(np.nanmean(ring)) - 1.0) < 0.05  # next to the object the light is as elsewhere


@pytest.mark.parametrize("rotation", [0.0, 90.0, -90.0, 450.0, 45.0, 30.0, -1000.0])
def test_a_tile_of_a_forced_aspect_is_turned_in_physical_units(rotation: float) -> None:
    """A 100 x 100 px swatch given as 0.1 m x 0.2 m (swatch_size with both sides): its texel axes,
    mapped back onto an unrotated 0.8 m square surface, stay at right angles, are as long as the
    tile's sides, and turn by the rotation (before, 90 degrees kept the 0.1 m side along x and
    45 degrees laid rhombi)."""
    H = np.diag([800.0, 800.0, 1.0])  # the unit square over an 800 px photo: 1 px = 1 mm
    T = texel_transform(H, 8.0, 4.0, rotation, 100, 100, tile_aspect=2.0)
    to_surface = np.linalg.inv(T[:2, :2])  # texel steps in photo pixels (millimetres)
    across, down = to_surface[:, 0] * 100, to_surface[:, 1] * 100  # the tile's width and height
    assert np.linalg.norm(across) == pytest.approx(100.0) and np.linalg.norm(down) == pytest.approx(200.0)
    assert float(across @ down) == pytest.approx(0.0, abs=1e-6)
    theta = math.radians(rotation)
    # The material turns by the rotation (its sense as texel_transform's own: R maps surface to texels).
    assert across / 100 == pytest.approx([math.cos(theta), -math.sin(theta)], abs=1e-9)


def test_a_herringbone_of_a_forced_aspect_lays_planks_at_right_angles() -> None:
    """A 1000 x 100 px plank given as 1.0 m x 0.2 m: 5:1 planks, at right angles, in the physical
    frame; a plank's texels turned back to the surface keep the plank's proportions."""
    layout = Layout(herringbone=True, tile_aspect=0.2)
    stretch = layout.stretch(1000, 100)
    assert stretch == pytest.approx(0.5)
    rng = np.random.default_rng(2)
    qx, qy = (rng.uniform(0, 20_000, 50_000).astype(np.float32) for _ in range(2))  # surface texel units
    u, v = herringbone_texels(qx, qy, 1000, 100, stretch)
    assert u.min() >= 0 and u.max() < 1000 and v.min() >= 0 and v.max() < 100
    step = np.float32(0.25)
    # Steps along the surface's diagonals (texel rows are `stretch` apart there): along one the
    # grain (u) grows, along the other, at right angles, v grows across the plank.
    down = step * np.float32(stretch)
    du = herringbone_texels(qx + step, qy - down, 1000, 100, stretch)[0] - u
    dv = herringbone_texels(qx + step, qy + down, 1000, 100, stretch)[1] - v
    along = np.abs(du - step * math.sqrt(2)) < 0.01
    across = np.abs(dv - step * math.sqrt(2) * stretch) < 0.01
    assert 0.4 < along.mean() < 0.6 and np.mean(along & across) > 0.35


@pytest.mark.parametrize("ratio", [2.0, 3.7, 6.0])
def test_herringbone_planks_cover_the_plane_exactly_once(ratio: float) -> None:
    """The lattice in layouts' docstring: H = [0, n) x [0, 1), V = [n, n + 1) x [1 - n, 1), moved by
    a (1, 1) + b (n, -n), cover every point once."""
    pts = np.random.default_rng(0).uniform(-40, 40, (50_000, 2))
    count = np.zeros(len(pts), int)
    for a in range(-60, 61):
        for b in range(-25, 26):
            x = pts[:, 0] - a - b * ratio
            y = pts[:, 1] - a + b * ratio
            count += ((x >= 0) & (x < ratio) & (y >= 0) & (y < 1)).astype(int)
            count += ((x >= ratio) & (x < ratio + 1) & (y >= 1 - ratio) & (y < 1)).astype(int)
    assert set(np.unique(count)) == {1}


def test_herringbone_lays_whole_planks_at_right_angles_in_a_repeating_zigzag() -> None:
    width, height = 400, 100  # a 4:1 plank
    rng = np.random.default_rng(1)
    qx, qy = (rng.uniform(-3000, 3000, 100_000).astype(np.float32) for _ in range(2))
    u, v = herringbone_texels(qx, qy, width, height)
    assert u.min() >= 0 and u.max() < width and v.min() >= 0 and v.max() < height
    # The pattern repeats along the zigzag (u) and across it.
    plank_w = width / 4
    for shift in ((math.sqrt(2) * plank_w, 0.0), (0.0, math.sqrt(2) * 4 * plank_w)):
        su, sv = herringbone_texels(qx + np.float32(shift[0]), qy + np.float32(shift[1]), width, height)
        assert np.mean((np.abs(su - u) < 0.05) & (np.abs(sv - v) < 0.05)) > 0.999
    # Half the planks run along one diagonal, half along the other: the grain (u) grows along
    # (1, -1) on one kind and along (1, 1) on the other.
    step = np.float32(0.5)
    du_a = herringbone_texels(qx + step, qy - step, width, height)[0] - u
    du_b = herringbone_texels(qx + step, qy + step, width, height)[0] - u
    along_a = np.abs(du_a - step * math.sqrt(2)) < 0.01
    along_b = np.abs(du_b - step * math.sqrt(2)) < 0.01
    assert 0.45 < along_a.mean() < 0.55 and 0.45 < along_b.mean() < 0.55
    assert np.mean(along_a & along_b) == 0


def test_a_squarer_swatch_gives_two_to_one_planks_that_show_different_bands() -> None:
    assert plank_ratio(256, 256) == 2.0 and plank_ratio(1200, 200) == 6.0 and plank_ratio(5000, 100) == 12.0
    qx, qy = np.meshgrid(np.arange(0, 2000, 7, dtype=np.float32), np.arange(0, 2000, 7, dtype=np.float32))
    _, v = herringbone_texels(qx, qy, 256, 256)
    band_starts = np.floor(v / 8)  # plank width 128: bands start anywhere in [0, 128)
    assert len(np.unique(band_starts)) > 10


@pytest.mark.parametrize("width", [1300, 2000, 5000])
def test_a_plank_longer_than_the_most_ratio_is_cut_shorter_not_widened_past_its_last_row(width: int) -> None:
    """A 20:1 plank swatch: planks of the most ratio (12:1) as wide as the swatch is high, each a
    length of it; none reaches past the swatch's last row (which clipping smeared over 40 % of
    every plank)."""
    height = 100
    qx, qy = np.meshgrid(np.arange(0, 30 * width, 37, dtype=np.float32), np.arange(0, 30 * width, 37, dtype=np.float32))
    u, v = herringbone_texels(qx.ravel(), qy.ravel(), width, height)
    assert u.min() >= 0 and u.max() < width and v.max() < height
    assert np.mean(v >= height - 1) < 0.02  # the last row's share of a plank's width: 1 %
    assert u.max() > 0.9 * width  # every part of the swatch's length is shown somewhere


def test_herringbone_projection_differs_from_straight_and_stays_inside_the_mask() -> None:
    scene = scenes.room_scene(320, 240)
    plank = np.zeros((40, 160, 3), np.uint8)
    plank[:, :, 2] = np.linspace(60, 220, 160, dtype=np.uint8)[None, :]  # grain: red grows along the plank
    mask = imaging.polygon_mask(scene.quad, 320, 240)
    straight = project_material(scene.photo, plank, mask, scene.homography, 6, 6)
    laid = project_material(scene.photo, plank, mask, scene.homography, 6, 6, layout=Layout(herringbone=True))
    inside = mask == 255
    outside = cv2.dilate(mask, np.ones((5, 5), np.uint8)) == 0  # beyond the soft edge
    assert np.abs(laid.astype(int) - straight.astype(int))[inside].mean() > 10
    np.testing.assert_array_equal(laid[outside], scene.photo[outside])


def test_strips_on_the_thread_pool_render_exactly_what_one_pass_renders(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.projection import composite

    scene = scenes.room_scene(320, 240)
    mask = imaging.polygon_mask(scene.quad, 320, 240)
    swatch = scenes.plank_texture(64)
    monkeypatch.setattr(composite, "_STRIP_PIXELS", 10**9)
    whole = project_material(scene.photo, swatch, mask, scene.homography, 6, 6)
    monkeypatch.setattr(composite, "_STRIP_PIXELS", 1000)  # this small surface in many strips
    np.testing.assert_array_equal(project_material(scene.photo, swatch, mask, scene.homography, 6, 6), whole)


def test_strips_no_sampler_has_started_are_sampled_by_the_caller_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from services.projection import composite

    scene = scenes.room_scene(320, 240)
    mask = imaging.polygon_mask(scene.quad, 320, 240)
    swatch = scenes.plank_texture(64)
    monkeypatch.setattr(composite, "_STRIP_PIXELS", 1000)
    expected = project_material(scene.photo, swatch, mask, scene.homography, 6, 6)
    busy, release = ThreadPoolExecutor(1), threading.Event()
    monkeypatch.setattr(composite, "_SAMPLERS", busy)
    busy.submit(release.wait)  # the one sampler is held (another request's strip, say)
    watchdog = threading.Timer(30, release.set)  # what frees it if the composite waits for it
    watchdog.start()
    try:
        sampling = composite.Sampling(swatch, mask, scene.homography, 6, 6)
        result = composite.composite(scene.photo, sampling)
        assert len(sampling.spans) > 1 and all(span.cancelled() for span in sampling.spans)
        assert not release.is_set()  # every strip sampled here, without the sampler
    finally:
        watchdog.cancel()
        release.set()
        busy.shutdown()
    np.testing.assert_array_equal(result, expected)


@pytest.mark.parametrize("chunk", [1, 3 * 37 * 5, 1 << 16])
def test_the_lit_colour_is_the_same_in_chunks_of_rows(monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    """_lit lights the sampled colour and takes it back to sRGB a few rows at a time: byte for byte
    one saturating multiply and one table lookup over the whole strip, whatever the chunk's rows."""
    rng = np.random.default_rng(7)
    sampled = rng.integers(0, 65536, (23, 37, 3)).astype(np.uint16)
    shade = rng.uniform(0.0, 3.0, (23, 37)).astype(np.float32)
    linear = cv2.multiply(sampled, cv2.cvtColor(shade, cv2.COLOR_GRAY2BGR), dtype=cv2.CV_16U)
    monkeypatch.setattr(composite, "_SRGB_CHUNK", chunk)
    assert np.array_equal(composite._lit(sampled, shade), composite._LINEAR_TO_SRGB[linear])


@pytest.mark.parametrize("chunk", [1, 3 * 37 * 5, 1 << 16])
def test_a_coloured_light_is_lit_the_same_in_chunks_of_rows(monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    """With a sun patch's colour, _lit multiplies each channel by the colour the light's level
    gives it (LightColour.lit), in chunks as for a grey light."""
    rng = np.random.default_rng(8)
    sampled = rng.integers(0, 65536, (23, 37, 3)).astype(np.uint16)
    shade = rng.uniform(0.0, 3.0, (23, 37)).astype(np.float32)
    colour = LightColour(0.8, 2.4, np.ones(3, np.float32), np.array([0.7, 0.95, 1.25], np.float32))
    linear = cv2.multiply(sampled, colour.lit(shade), dtype=cv2.CV_16U)
    monkeypatch.setattr(composite, "_SRGB_CHUNK", chunk)
    lit = composite._lit(sampled, shade, colour)
    assert np.array_equal(lit, composite._LINEAR_TO_SRGB[linear])
    warm = shade >= 2.4
    red_over_blue = lit[..., 2].astype(np.float32) / np.maximum(lit[..., 0], 1)
    grey_lit = composite._lit(sampled, shade)
    grey_ratio = grey_lit[..., 2].astype(np.float32) / np.maximum(grey_lit[..., 0], 1)
    assert np.all(red_over_blue[warm] >= grey_ratio[warm])  # the patch warmer than a grey light
    assert np.array_equal(lit[shade <= 0.8], grey_lit[shade <= 0.8])  # the shade white, as the grey


def test_a_surface_wider_than_remap_takes_is_sampled_in_parts_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    """cv2.remap writes fewer than 32,767 columns and rows: a wider surface (a panorama's floor,
    up to the 65,500 px a photo may have) is sampled in parts, which sample what one pass does."""
    from services.projection import texture

    scene = scenes.room_scene(320, 240)
    mask = imaging.polygon_mask(scene.quad, 320, 240)
    swatch = scenes.plank_texture(64)
    whole = project_material(scene.photo, swatch, mask, scene.homography, 6, 6)
    monkeypatch.setattr(texture, "_MAX_REMAP_SIDE", 24)  # this small surface in many parts
    np.testing.assert_array_equal(project_material(scene.photo, swatch, mask, scene.homography, 6, 6), whole)


@pytest.mark.parametrize(("width", "height", "top", "bottom"), [(40_000, 96, 10.0, 90.0), (65_500, 64, 25.0, 35.0)])
def test_a_panorama_floor_wider_than_32767_px_is_projected(width: int, height: int, top: float, bottom: float) -> None:
    """A 40,000 x 96 photo (3.8 MP, within every limit) whose surface spans 36,000 columns: the
    sampler's cv2.remap refused it, and the job failed with PIPELINE_ERROR. And a 65,500 x 64 one
    (64 px: the least side a photo may have) whose surface is a strip a dozen rows tall: its box
    under 1.5 MP, its light was read at full size, and the shading's cv2.remap refused that."""
    photo = np.full((height, width, 3), 150, np.uint8)
    quad = np.array(
        [(0.25 * width, top), (0.75 * width, top), (0.95 * width, bottom), (0.05 * width, bottom)], np.float64
    )
    mask = imaging.polygon_mask(quad, width, height)
    swatch = np.full((64, 64, 3), (40, 90, 200), np.uint8)
    out = project_material(photo, swatch, mask, homography.quad_homography(quad), 24, 24)
    inside = cv2.erode(mask, np.ones((5, 5), np.uint8)) == 255
    assert np.abs(out[inside].mean(axis=0) - (40, 90, 200)).max() < 3


def _blended_whole(
    photo: np.ndarray, material: np.ndarray, mask: np.ndarray, x: int, y: int, w: int, h: int
) -> np.ndarray:
    """The strip (x, y, w, h) blended as one: the feather over all its columns, then _blend_into."""
    out = photo.copy()
    alpha = composite._feather(mask, x, y, w, h)
    composite._blend_into(out[y : y + h, x : x + w], material, photo[y : y + h, x : x + w], alpha)
    return out


@pytest.mark.parametrize("seed", range(6))
def test_a_strip_blended_by_runs_of_columns_is_the_strip_blended_whole(seed: int) -> None:
    """_blend_strip feathers and mixes only the columns the mask's edge reaches (those it covers
    take the material, those it misses keep the photo): byte for byte the strip blended whole, for
    masks with holes, specks, soft edges and edges along the photo's borders, and strips whose
    partly covered pixels are few (mixed one by one) or many (blended at once)."""
    rng = np.random.default_rng(seed)
    height, width = 90, 160
    photo = rng.integers(0, 256, (height, width, 3)).astype(np.uint8)
    mask = np.zeros((height, width), np.uint8)
    corners = np.array([[20, -10], [150, 5], [175, 95], [-8, 80]]) + rng.integers(-6, 7, (4, 2))
    cv2.fillPoly(mask, [corners.astype(np.int32)], (255,), lineType=cv2.LINE_AA if seed % 2 else cv2.LINE_8)
    holes = rng.random((height, width)) > (0.999 if seed < 3 else 0.97)
    holes[:, 90:] = False  # the right of the strip whole: some columns covered wholly
    mask[holes] = 255 - mask[holes]
    mask[34:38, 100:104] = 240  # a soft mask's plateau, nearly covered
    sampled = rng.integers(0, 65536, (height, width, 3)).astype(np.uint16)
    shading = Shading(rng.uniform(0.5, 1.5, (height, width)).astype(np.float32), (0, 0, width, height), "test")
    T = np.eye(3)  # every pixel in front of the camera
    top, bottom, start = int(rng.integers(12, 30)), int(rng.integers(50, 78)), int(rng.integers(0, 20))
    cols = width - start - int(rng.integers(0, 20))
    out = photo.copy()
    composite._blend_strip(out, photo, shading, sampled, mask, T, 0, 0, top, bottom, (start, cols))
    material = composite._lit(sampled[top:bottom, start : start + cols], shading.region(start, top, cols, bottom - top))
    np.testing.assert_array_equal(out, _blended_whole(photo, material, mask, start, top, cols, bottom - top))
    covered, edges = composite._column_runs(mask, start, top, cols, bottom - top)
    assert covered and edges  # both kinds of run were taken
    partial = cv2.inRange(composite._feather(mask, start, top, cols, bottom - top), 1, 254)  # type: ignore[call-overload]
    many = cv2.countNonZero(partial) > composite._EDGE_SHARE * cols * (bottom - top)
    assert many == (seed >= 3)  # blended at once, or the partly covered pixels one by one


def test_the_columns_a_mask_covers_wholly_reach_past_the_feather() -> None:
    """A column is covered wholly only where the mask is whole within the feather's reach of it, in
    its rows and a reach above and below; a hole beside it makes it (and its neighbours) an edge."""
    mask = np.full((40, 100), 255, np.uint8)
    mask[35, 50] = 0  # below the strip's rows, within the feather's reach
    covered, edges = composite._column_runs(mask, 0, 10, 100, 22)
    reach = composite._FEATHER_REACH
    assert covered == [(0, 50 - reach), (51 + reach, 100)] and edges == [(50 - reach, 51 + reach)]
    mask[35, 50] = 255
    assert composite._column_runs(mask, 0, 10, 100, 22) == ([(0, 100)], [])
    mask[:, :30] = 0
    assert composite._column_runs(mask, 0, 10, 100, 22) == ([(30 + reach, 100)], [(30 - reach, 30 + reach)])
