/**
 * Where the surface is, drawn over the photo: the quad's four corners, positive and negative
 * points, or a box. An SVG laid over the image with a viewBox of the photo's own pixels, so every
 * coordinate is in photo pixels whatever size the image is shown at. Pointer events serve mouse,
 * pen and touch alike; corners, points and the box's corners can be dragged, selected and deleted.
 * The keyboard does all of it too: a cursor moved with the arrow keys, Enter to place there.
 */

import { useEffect, useId, useRef, useState, type KeyboardEvent, type PointerEvent, type ReactNode } from "react";

import { Button, Segmented } from "./ui";

export interface Pt {
  x: number;
  y: number;
}

export interface BoxHint {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
}

export interface Hints {
  quad: Pt[];
  positive: Pt[];
  negative: Pt[];
  box: BoxHint | null;
}

export const NO_HINTS: Hints = { quad: [], positive: [], negative: [], box: null };

export type HintMode = "quad" | "positive" | "negative" | "box";
type PointKind = "quad" | "positive" | "negative";
type Target = { kind: PointKind | "box"; index: number };

const MODES: { value: HintMode; label: string; title: string }[] = [
  { value: "quad", label: "Corners", title: "Click the 4 corners of a rectangle lying on the surface, in order around it" },
  { value: "positive", label: "+ Points", title: "Click points on the surface" },
  { value: "negative", label: "− Points", title: "Click points that are not on the surface" },
  { value: "box", label: "Box", title: "Drag a box around the surface" },
];

// One arrow key press moves the cursor or the selected handle this many screen pixels (Shift: ten
// times as far): fine enough to place a corner, few enough presses to cross the photo.
const KEY_STEP_PX = 4;
const FAST_STEPS = 10;
const ARROWS: Record<string, [number, number]> = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
const KEY_HELP =
  "Keys: the arrows move the cursor or the selected handle (Shift: faster), Enter places a handle at the cursor (a box: Enter, the arrows, Enter) or ends moving the selected one, N selects the next handle, Delete removes it, Escape deselects.";

function boxCorners(b: BoxHint): Pt[] {
  return [
    { x: b.x0, y: b.y0 },
    { x: b.x1, y: b.y0 },
    { x: b.x1, y: b.y1 },
    { x: b.x0, y: b.y1 },
  ];
}

function normalized(b: BoxHint): BoxHint {
  return { x0: Math.min(b.x0, b.x1), y0: Math.min(b.y0, b.y1), x1: Math.max(b.x0, b.x1), y1: Math.max(b.y0, b.y1) };
}

function moveBoxCorner(b: BoxHint, corner: number, p: Pt): BoxHint {
  const out = { ...b };
  if (corner === 0 || corner === 3) out.x0 = p.x;
  else out.x1 = p.x;
  if (corner === 0 || corner === 1) out.y0 = p.y;
  else out.y1 = p.y;
  return out;
}

export function HintEditor({
  url,
  width,
  height,
  hints,
  onChange,
  mode,
  onModeChange,
  actions,
  errorId,
}: {
  url: string;
  width: number;
  height: number;
  hints: Hints;
  onChange: (hints: Hints) => void;
  mode: HintMode;
  onModeChange: (mode: HintMode) => void;
  actions?: ReactNode;
  /** The id of the hints' error message, when there is one. */
  errorId?: string | undefined;
}) {
  const svg = useRef<SVGSVGElement>(null);
  const [selected, setSelected] = useState<Target | null>(null);
  const drag = useRef<{ target: Target; pointerId: number } | null>(null);
  // Photo pixels per screen pixel, so handles keep their on-screen size.
  const [scale, setScale] = useState(1);
  const latest = useRef(hints);
  latest.current = hints;
  // The keyboard's cursor, in photo pixels, shown while the overlay has the keyboard's focus: not
  // to a mouse or a finger, which place handles where they press (a cross left at the cursor looked
  // like a handle placed there).
  const [cursor, setCursor] = useState<Pt>({ x: width / 2, y: height / 2 });
  const [keyboard, setKeyboard] = useState(false);
  const helpId = useId();
  useEffect(() => setCursor({ x: width / 2, y: height / 2 }), [width, height]);

  useEffect(() => {
    const element = svg.current;
    if (!element) return;
    const measure = () => {
      const shown = element.getBoundingClientRect().width;
      if (shown > 0) setScale(width / shown);
    };
    measure();
    const observer = new ResizeObserver(measure);
    observer.observe(element);
    return () => observer.disconnect();
  }, [width]);

  const toPhoto = (event: PointerEvent): Pt => {
    const rect = svg.current!.getBoundingClientRect();
    const x = ((event.clientX - rect.left) / rect.width) * width;
    const y = ((event.clientY - rect.top) / rect.height) * height;
    return { x: Math.round(Math.min(width, Math.max(0, x)) * 10) / 10, y: Math.round(Math.min(height, Math.max(0, y)) * 10) / 10 };
  };

  const place = (target: Target, p: Pt) => {
    const h = latest.current;
    if (target.kind === "box") {
      if (h.box) onChange({ ...h, box: moveBoxCorner(h.box, target.index, p) });
      return;
    }
    const list = h[target.kind].map((q, i) => (i === target.index ? p : q));
    onChange({ ...h, [target.kind]: list });
  };

  const startDrag = (event: PointerEvent, target: Target) => {
    svg.current?.setPointerCapture(event.pointerId);
    drag.current = { target, pointerId: event.pointerId };
    setSelected(target);
  };

  const onBackgroundDown = (event: PointerEvent<SVGSVGElement>) => {
    if (event.button !== 0) return;
    event.preventDefault();
    setKeyboard(false);
    svg.current?.focus({ preventScroll: true });
    const p = toPhoto(event);
    const h = latest.current;
    if (mode === "box") {
      onChange({ ...h, box: { x0: p.x, y0: p.y, x1: p.x, y1: p.y } });
      startDrag(event, { kind: "box", index: 2 });
      return;
    }
    if (mode === "quad" && h.quad.length >= 4) {
      setSelected(null);
      return; // four corners already: drag one to move it
    }
    const list = [...h[mode], p];
    onChange({ ...h, [mode]: list });
    startDrag(event, { kind: mode, index: list.length - 1 });
  };

  const onHandleDown = (event: PointerEvent, target: Target) => {
    if (event.button !== 0) return;
    event.preventDefault();
    event.stopPropagation();
    setKeyboard(false);
    svg.current?.focus({ preventScroll: true });
    startDrag(event, target);
  };

  const onMove = (event: PointerEvent<SVGSVGElement>) => {
    if (drag.current?.pointerId === event.pointerId) {
      place(drag.current.target, toPhoto(event));
    }
  };

  const finishBox = () => {
    const h = latest.current;
    if (h.box) {
      const b = normalized(h.box);
      // A click without a drag makes no box.
      onChange({ ...h, box: b.x1 - b.x0 < 4 * scale || b.y1 - b.y0 < 4 * scale ? null : b });
    }
  };

  const onUp = (event: PointerEvent<SVGSVGElement>) => {
    if (drag.current?.pointerId !== event.pointerId) return;
    drag.current = null;
    finishBox();
  };

  const deleteSelected = () => {
    if (!selected) return;
    const h = latest.current;
    if (selected.kind === "box") onChange({ ...h, box: null });
    else onChange({ ...h, [selected.kind]: h[selected.kind].filter((_, i) => i !== selected.index) });
    setSelected(null);
  };

  const clearMode = () => {
    const h = latest.current;
    onChange(mode === "box" ? { ...h, box: null } : { ...h, [mode]: [] });
    setSelected(null);
  };

  const clamp = (p: Pt): Pt => ({
    x: Math.round(Math.min(width, Math.max(0, p.x)) * 10) / 10,
    y: Math.round(Math.min(height, Math.max(0, p.y)) * 10) / 10,
  });

  const handles = (): Target[] => {
    const h = latest.current;
    if (mode === "box") return h.box ? [0, 1, 2, 3].map((index) => ({ kind: "box" as const, index })) : [];
    return h[mode].map((_, index) => ({ kind: mode, index }));
  };

  const positionOf = (target: Target): Pt | undefined => {
    const h = latest.current;
    return target.kind === "box" ? (h.box ? boxCorners(h.box)[target.index] : undefined) : h[target.kind][target.index];
  };

  /** Enter: a handle of the current mode at the cursor, which stays where it is for the next; a
   * box's first press anchors it, and its opposite corner, selected, is then moved with the arrows
   * until Enter again. */
  const placeAtCursor = () => {
    const h = latest.current;
    if (mode === "box") {
      onChange({ ...h, box: { x0: cursor.x, y0: cursor.y, x1: cursor.x, y1: cursor.y } });
      setSelected({ kind: "box", index: 2 });
      return;
    }
    if (mode === "quad" && h.quad.length >= 4) return;
    onChange({ ...h, [mode]: [...h[mode], cursor] });
  };

  const selectNext = () => {
    const all = handles();
    if (all.length === 0) return;
    const at = selected ? all.findIndex((t) => t.kind === selected.kind && t.index === selected.index) : -1;
    const next = all[(at + 1) % all.length]!;
    setSelected(next);
    setCursor(positionOf(next) ?? cursor);
  };

  const onKey = (event: KeyboardEvent) => {
    const arrow = ARROWS[event.key];
    if (arrow || event.key === "Enter" || event.key === " ") setKeyboard(true);
    if (arrow) {
      event.preventDefault();
      const step = KEY_STEP_PX * scale * (event.shiftKey ? FAST_STEPS : 1);
      const from = (selected && positionOf(selected)) || cursor;
      const to = clamp({ x: from.x + arrow[0] * step, y: from.y + arrow[1] * step });
      setCursor(to);
      if (selected) place(selected, to);
    } else if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      if (selected?.kind === "box") {
        finishBox();
        setSelected(null);
      } else if (selected) {
        setSelected(null); // done moving it (the cursor stays on it): a handle placed now would lie on it
      } else {
        placeAtCursor();
      }
    } else if (event.key === "n" || event.key === "N") {
      event.preventDefault();
      selectNext();
    } else if (event.key === "Escape" && selected) {
      event.preventDefault();
      setSelected(null);
    } else if ((event.key === "Delete" || event.key === "Backspace") && selected) {
      event.preventDefault();
      deleteSelected();
    }
  };

  const r = 9 * scale;
  const isSelected = (kind: Target["kind"], index: number) => selected?.kind === kind && selected.index === index;
  const quadPath = hints.quad.map((p) => `${p.x},${p.y}`).join(" ");
  const counts = `${hints.quad.length}/4 corners · ${hints.positive.length} + · ${hints.negative.length} − · ${hints.box ? "box" : "no box"}`;

  return (
    <div className="hint-editor">
      <div className="hint-toolbar">
        <Segmented label="Hint mode" value={mode} options={MODES} onChange={(m) => { setSelected(null); onModeChange(m); }} />
        <div className="hint-toolbar-actions">
          <Button variant="ghost" onClick={deleteSelected} disabled={!selected} data-testid="hint-delete">
            Delete selected
          </Button>
          <Button variant="ghost" onClick={clearMode} data-testid="hint-clear">
            {mode === "quad" ? "Clear corners" : mode === "box" ? "Clear box" : "Clear points"}
          </Button>
          {actions}
        </div>
      </div>
      <p className="field-hint" data-testid="hint-help">
        {MODES.find((m) => m.value === mode)?.title}.{" "}
        <span className="muted" aria-live="polite">
          {counts}
        </span>
      </p>
      <p className="field-hint muted" id={helpId}>
        {KEY_HELP}
      </p>
      <div className="hint-stage">
        {/* Its size before it has loaded (the overlay takes the image's box): clicks made meanwhile
            land where they are shown, not on a box of no height. */}
        <img src={url} alt="The photo" width={width} height={height} draggable={false} />
        <svg
          ref={svg}
          className={`hint-overlay mode-${mode}`}
          viewBox={`0 0 ${width} ${height}`}
          preserveAspectRatio="none"
          tabIndex={0}
          role="application"
          aria-label="Hints over the photo"
          aria-describedby={[helpId, errorId].filter(Boolean).join(" ")}
          data-testid="hint-canvas"
          data-width={width}
          data-height={height}
          onPointerDown={onBackgroundDown}
          onPointerMove={onMove}
          onPointerUp={onUp}
          onPointerCancel={onUp}
          onKeyDown={onKey}
          onFocus={(event) => setKeyboard(event.currentTarget.matches(":focus-visible"))}
          onBlur={() => setKeyboard(false)}
        >
          {hints.box && (
            <g className="hint-box">
              <rect
                x={Math.min(hints.box.x0, hints.box.x1)}
                y={Math.min(hints.box.y0, hints.box.y1)}
                width={Math.abs(hints.box.x1 - hints.box.x0)}
                height={Math.abs(hints.box.y1 - hints.box.y0)}
                vectorEffect="non-scaling-stroke"
              />
              {boxCorners(hints.box).map((p, i) => (
                <rect
                  key={i}
                  className={`handle${isSelected("box", i) ? " selected" : ""}`}
                  x={p.x - r * 0.8}
                  y={p.y - r * 0.8}
                  width={r * 1.6}
                  height={r * 1.6}
                  data-kind="box"
                  data-index={i}
                  vectorEffect="non-scaling-stroke"
                  onPointerDown={(e) => onHandleDown(e, { kind: "box", index: i })}
                />
              ))}
            </g>
          )}
          {hints.quad.length > 0 && (
            <g className="hint-quad">
              {hints.quad.length === 4 ? (
                <polygon points={quadPath} vectorEffect="non-scaling-stroke" />
              ) : (
                <polyline points={quadPath} vectorEffect="non-scaling-stroke" />
              )}
              {hints.quad.map((p, i) => (
                <g key={i}>
                  <circle
                    className={`handle${isSelected("quad", i) ? " selected" : ""}`}
                    cx={p.x}
                    cy={p.y}
                    r={r}
                    data-kind="quad"
                    data-index={i}
                    vectorEffect="non-scaling-stroke"
                    onPointerDown={(e) => onHandleDown(e, { kind: "quad", index: i })}
                  />
                  <text x={p.x} y={p.y} dy={r * 0.38} fontSize={r * 1.1} textAnchor="middle">
                    {i + 1}
                  </text>
                </g>
              ))}
            </g>
          )}
          {(["positive", "negative"] as const).map((kind) =>
            hints[kind].map((p, i) => (
              <g key={`${kind}-${i}`} className={`hint-point ${kind}`}>
                <circle
                  className={`handle${isSelected(kind, i) ? " selected" : ""}`}
                  cx={p.x}
                  cy={p.y}
                  r={r * 0.85}
                  data-kind={kind}
                  data-index={i}
                  vectorEffect="non-scaling-stroke"
                  onPointerDown={(e) => onHandleDown(e, { kind, index: i })}
                />
                <text x={p.x} y={p.y} dy={r * 0.4} fontSize={r * 1.3} textAnchor="middle">
                  {kind === "positive" ? "+" : "−"}
                </text>
              </g>
            )),
          )}
          {keyboard && !selected && (
            <g className="hint-cursor" data-testid="hint-cursor" data-x={cursor.x} data-y={cursor.y}>
              <circle cx={cursor.x} cy={cursor.y} r={r} vectorEffect="non-scaling-stroke" />
              <line x1={cursor.x - 2 * r} y1={cursor.y} x2={cursor.x + 2 * r} y2={cursor.y} vectorEffect="non-scaling-stroke" />
              <line x1={cursor.x} y1={cursor.y - 2 * r} x2={cursor.x} y2={cursor.y + 2 * r} vectorEffect="non-scaling-stroke" />
            </g>
          )}
        </svg>
      </div>
    </div>
  );
}
