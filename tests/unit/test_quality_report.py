"""make quality's report: scenes not scored (the plain old surfaces) get their own table and stay
out of the summary and the targets' verdicts."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from benchmarks.quality import report, scenes
from benchmarks.quality.modes import MODES, Geometry
from services.projection.shading import AUTO


def result(spec: scenes.Spec, db: float) -> report.SceneResult:
    geometry = Geometry(np.zeros((1, 1), np.uint8), np.eye(3), (1.0, 1.0), np.zeros((1, 1, 3), np.uint8), 0.0, 0.0, 1.0)
    modes = {mode: report.ModeResult(geometry, {AUTO: report.Swap(db, 0.9)}) for mode in MODES}
    return report.SceneResult(spec, {AUTO: db}, {AUTO: 1.0}, {AUTO: "texture_space"}, modes)


def test_unscored_scenes_are_reported_apart_and_left_out_of_the_summary(capsys: pytest.CaptureFixture[str]) -> None:
    scored = [s for s in scenes.SPECS if s.scored][:3]
    plain = next(s for s in scenes.SPECS if not s.scored)
    # Three scored scenes at 36 dB meet the quad median; an unscored one at 20 dB must not pull
    # the median or the worst down.
    results = [result(spec, 36.5) for spec in scored] + [result(plain, 20.0)]
    report.report(results, [AUTO])
    out = capsys.readouterr().out
    apart = out.split("### Plain old surfaces (not in the summary)")[1].split("### Summary")[0]
    assert plain.name in apart and "20.00 / 20.00 dB" in apart
    summary = out.split("### Summary")[1]
    assert "| quad | 36.50 / 36.50 dB |" in summary
    assert "quad worst PSNR ≥ 33 dB: met" in summary
    assert "mask + focal median PSNR ≥ 32 dB: met" in summary
    assert "mask + focal median plane error ≤ 1° and scale error ≤ 2%: met" in summary
    # Counted, the same scene fails the worst-scene target.
    counted = [result(spec, 36.5) for spec in scored] + [result(dataclasses.replace(plain, scored=True), 20.0)]
    report.report(counted, [AUTO])
    assert "quad worst PSNR ≥ 33 dB: NOT met" in capsys.readouterr().out.split("### Summary")[1]
    # A mask mode below 32 dB in most scenes fails its own target.
    low = [result(spec, 36.5) for spec in scored]
    for r in low[:2]:
        r.modes["mask + focal"].swaps[AUTO] = report.Swap(30.0, 0.8)
    report.report(low, [AUTO])
    assert "mask + focal median PSNR ≥ 32 dB: NOT met" in capsys.readouterr().out.split("### Summary")[1]
