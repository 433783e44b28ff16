/** Before and after, one over the other: drag (or use the arrow keys) to move the split. */

import { useState } from "react";

export function CompareSlider({
  before,
  after,
  width,
  height,
  afterLabel = "After",
}: {
  before: string;
  after: string;
  width: number;
  height: number;
  afterLabel?: string;
}) {
  const [split, setSplit] = useState(50);
  return (
    <div className="compare" style={{ aspectRatio: `${width} / ${height}` }} data-testid="compare">
      <img className="compare-before" src={before} alt="Before" draggable={false} />
      <img
        className="compare-after"
        src={after}
        alt={afterLabel}
        draggable={false}
        style={{ clipPath: `inset(0 0 0 ${split}%)` }}
        data-testid="after-image"
      />
      <div className="compare-handle" style={{ left: `${split}%` }} aria-hidden="true">
        <span />
      </div>
      <span className="compare-tag left">Before</span>
      <span className="compare-tag right">{afterLabel}</span>
      <input
        className="compare-range"
        type="range"
        min={0}
        max={100}
        step={0.5}
        value={split}
        aria-label="Before and after split"
        onChange={(e) => setSplit(Number(e.target.value))}
        data-testid="compare-range"
      />
    </div>
  );
}
