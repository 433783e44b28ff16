/** A material swap: photo, swatches, surface, hints drawn on the photo, scale, rotation, layout. */

import { useRef, useState, type FormEvent } from "react";

import {
  create,
  ImageFormat,
  ImageSourceSchema,
  SubmitRenderRequestSchema,
  Surface,
  TileLayout,
  type ImageSource,
  type RenderClient,
} from "@render-pipeline/client";
import { fieldErrors, hasProblems, SWAP_CONTROLS, type FieldErrors } from "../errors";
import { useRequestKey } from "../idempotency";
import { rememberInputs, uploadSample, type Picture } from "../images";
import { go } from "../routes";
import type { Sample } from "../samples";
import { HintEditor, NO_HINTS, type HintMode, type Hints } from "./HintEditor";
import { ImagePicker } from "./ImagePicker";
import { Alert, Button, errorId, Field, FieldError, Segmented, useFocusOnProblems } from "./ui";

type ScaleMode = "repeats" | "size";
type Layout = "straight" | "brick" | "herringbone";

const SURFACES: { value: Surface; label: string }[] = [
  { value: Surface.FLOOR, label: "Floor" },
  { value: Surface.WALL, label: "Wall" },
  { value: Surface.CEILING, label: "Ceiling" },
  { value: Surface.FACADE, label: "Facade" },
];

const LAYOUTS: Record<Layout, TileLayout> = {
  straight: TileLayout.STRAIGHT,
  brick: TileLayout.BRICK,
  herringbone: TileLayout.HERRINGBONE,
};

const FORMATS: Record<string, ImageFormat> = {
  jpeg: ImageFormat.JPEG,
  png: ImageFormat.PNG,
  webp: ImageFormat.WEBP,
};

/** A number from a text input: "" is zero (unset), anything unparseable goes to the server as NaN,
 * which it refuses naming the field. */
function num(text: string): number {
  return text.trim() === "" ? 0 : Number(text.replace(",", "."));
}

function asset(p: Picture): ImageSource {
  return create(ImageSourceSchema, { source: { case: "assetId", value: p.assetId } });
}

export function SwapForm({ client, sample }: { client: RenderClient; sample: Sample | null }) {
  const [photo, setPhoto] = useState<Picture | null>(null);
  const [useMask, setUseMask] = useState(true);
  const [maskAsset, setMaskAsset] = useState("");
  const [swatches, setSwatches] = useState<Picture[]>([]);
  const [surface, setSurface] = useState<Surface>(Surface.FLOOR);
  const [hints, setHints] = useState<Hints>(NO_HINTS);
  const [mode, setMode] = useState<HintMode>("quad");
  const [scaleMode, setScaleMode] = useState<ScaleMode>("repeats");
  const [repeats, setRepeats] = useState("24");
  const [swatchW, setSwatchW] = useState("120");
  const [swatchH, setSwatchH] = useState("80");
  const [distance, setDistance] = useState("");
  const [quadW, setQuadW] = useState("");
  const [quadH, setQuadH] = useState("");
  const [focal, setFocal] = useState("");
  const [rotation, setRotation] = useState("0");
  const [layout, setLayout] = useState<Layout>("straight");
  const [rowOffset, setRowOffset] = useState("0.5");
  const [format, setFormat] = useState("jpeg");
  const [include2048, setInclude2048] = useState(false);
  const [errors, setErrors] = useState<FieldErrors>({});
  const [submitting, setSubmitting] = useState(false);
  const requestKey = useRequestKey();
  const form = useRef<HTMLFormElement>(null);
  useFocusOnProblems(form, errors);

  const isSamplePhoto = !!sample && photo?.sampleUrl === sample.photo;

  const choosePhoto = (list: Picture[]) => {
    const next = list[0] ?? null;
    setPhoto(next);
    setHints(NO_HINTS);
    setErrors((e) => ({ ...e, photo: [], hints: [] }));
  };

  const useSampleOutline = () => {
    if (!sample) return;
    setHints({ ...NO_HINTS, quad: sample.quad.map(([x, y]) => ({ x, y })) });
    setScaleMode("size");
    setSwatchW(String(Math.round(sample.swatchSizeMeters.width * 100)));
    setSwatchH(String(Math.round(sample.swatchSizeMeters.height * 100)));
    setDistance(String(sample.planeDistanceMeters));
    setFocal(String(Math.round(sample.focalLengthPx)));
  };

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setSubmitting(true);
    setErrors({});
    try {
      let mask = "";
      if (isSamplePhoto && useMask && sample) {
        mask = maskAsset || (await uploadSample(client, sample.mask, "mask.png")).assetId;
        setMaskAsset(mask);
      }
      const box = hints.box;
      const scale =
        scaleMode === "repeats"
          ? { scale: { case: "repeats" as const, value: num(repeats) } }
          : { scale: { case: "swatchSize" as const, value: { widthMeters: num(swatchW) / 100, heightMeters: num(swatchH) / 100 } } };
      const request = create(SubmitRenderRequestSchema, {
        output: { format: FORMATS[format] ?? ImageFormat.JPEG, include2048 },
        kind: {
          case: "materialSwap",
          value: {
            ...(photo ? { photo: asset(photo) } : {}),
            ...(swatches[0] ? { swatch: asset(swatches[0]) } : {}),
            variantSwatches: swatches.slice(1).map(asset),
            ...(mask ? { mask: { source: { case: "assetId", value: mask } } } : {}),
            surface,
            hints: {
              quad: hints.quad,
              positivePoints: hints.positive,
              negativePoints: hints.negative,
              ...(box ? { box: { xMin: box.x0, yMin: box.y0, xMax: box.x1, yMax: box.y1 } } : {}),
              ...(scaleMode === "size" && (quadW || quadH)
                ? { quadSize: { widthMeters: num(quadW), heightMeters: num(quadH) } }
                : {}),
              planeDistanceMeters: scaleMode === "size" ? num(distance) : 0,
              focalLengthPx: num(focal),
            },
            options: {
              realWorldScale: scale,
              rotationDegrees: num(rotation),
              layout: LAYOUTS[layout],
              rowOffset: layout === "brick" ? num(rowOffset) : 0,
            },
          },
        },
      });
      request.idempotencyKey = requestKey.keyFor(request);
      const { job } = await client.submitRender(request);
      if (!job) throw new Error("the server returned no job");
      requestKey.answered();
      rememberInputs(job.id, {
        ...(photo ? { photo: { url: photo.url, width: photo.width, height: photo.height } } : {}),
        swatches: swatches.map((s) => s.name),
      });
      go({ name: "job", id: job.id });
    } catch (e) {
      setErrors(fieldErrors(e, SWAP_CONTROLS));
    } finally {
      setSubmitting(false);
    }
  };

  const photoSamples = sample ? [{ name: "room", url: sample.photo }] : [];
  const swatchSamples = sample?.swatches ?? [];

  return (
    <form className="swap-form" onSubmit={submit} noValidate ref={form}>
      <div className="layout-two">
        <section className="card stack">
          <h2>1. Photo and surface</h2>
          <Field label="Room or facade photo" control="photo" problems={errors.photo}>
            <ImagePicker client={client} id="photo" label="Room or facade photo" pictures={photo ? [photo] : []} onChange={choosePhoto} samples={photoSamples} />
            {isSamplePhoto && (
              <label className="check">
                <input type="checkbox" checked={useMask} onChange={(e) => setUseMask(e.target.checked)} /> Use the sample's
                floor mask (keeps the furniture in front)
              </label>
            )}
          </Field>
          <Field label="Surface" control="surface" problems={errors.surface}>
            <Segmented
              label="Surface"
              value={String(surface)}
              options={SURFACES.map((s) => ({ value: String(s.value), label: s.label }))}
              onChange={(v) => setSurface(Number(v) as Surface)}
            />
          </Field>
          <div className="field" data-control="hints" role="group" aria-labelledby="hints-label">
            <span className="field-label" id="hints-label">
              Where the surface is
            </span>
            {photo ? (
              <HintEditor
                url={photo.url}
                width={photo.width}
                height={photo.height}
                hints={hints}
                onChange={setHints}
                mode={mode}
                onModeChange={setMode}
                errorId={errors.hints?.length ? errorId("hints") : undefined}
                actions={
                  isSamplePhoto && (
                    <Button variant="ghost" onClick={useSampleOutline} data-testid="use-sample-outline">
                      Use the sample's outline
                    </Button>
                  )
                }
              />
            ) : (
              <p className="placeholder">Pick a photo to draw the surface's corners, points or a box on it.</p>
            )}
            <FieldError control="hints" problems={errors.hints} />
          </div>
        </section>

        <section className="card stack">
          <h2>2. Material</h2>
          <Field
            label="Swatches"
            hint="The first is the material; more are rendered as variants over the same surface (up to 8)."
            control="swatches"
            problems={errors.swatches}
          >
            <ImagePicker
              client={client}
              id="swatches"
              label="Swatches"
              multiple
              pictures={swatches}
              onChange={setSwatches}
              samples={swatchSamples}
              captions={(i) => (i === 0 ? `Material · ${swatches[0]?.name ?? ""}` : `Variant ${i} · ${swatches[i]?.name ?? ""}`)}
            />
          </Field>

          <Field label="Scale" control="scale" problems={errors.scale}>
            <Segmented
              label="Scale"
              value={scaleMode}
              options={[
                { value: "repeats", label: "Repeats" },
                { value: "size", label: "Swatch size" },
              ]}
              onChange={setScaleMode}
            />
            {scaleMode === "repeats" ? (
              <label className="inline-input">
                <input name="repeats" inputMode="decimal" value={repeats} onChange={(e) => setRepeats(e.target.value)} />
                <span>times along the quad's longer side</span>
              </label>
            ) : (
              <div className="grid-inputs">
                <label>
                  <span>Swatch width (cm)</span>
                  <input name="swatch-width" inputMode="decimal" value={swatchW} onChange={(e) => setSwatchW(e.target.value)} />
                </label>
                <label>
                  <span>Swatch height (cm)</span>
                  <input name="swatch-height" inputMode="decimal" value={swatchH} onChange={(e) => setSwatchH(e.target.value)} />
                </label>
                <label>
                  <span>Camera to surface (m)</span>
                  <input name="plane-distance" inputMode="decimal" placeholder="e.g. 1.5" value={distance} onChange={(e) => setDistance(e.target.value)} />
                </label>
                <label>
                  <span>Quad width × height (m)</span>
                  <span className="pair">
                    <input name="quad-width" aria-label="Quad width (m)" inputMode="decimal" value={quadW} onChange={(e) => setQuadW(e.target.value)} />
                    <input name="quad-height" aria-label="Quad height (m)" inputMode="decimal" value={quadH} onChange={(e) => setQuadH(e.target.value)} />
                  </span>
                </label>
              </div>
            )}
            <details className="advanced">
              <summary>Camera</summary>
              <label className="inline-input">
                <input name="focal-length" inputMode="decimal" placeholder="unknown" value={focal} onChange={(e) => setFocal(e.target.value)} />
                <span>focal length in pixels (from EXIF; empty: estimated)</span>
              </label>
            </details>
          </Field>

          <div className="row-fields">
            <Field label="Rotation (°)" control="rotation" problems={errors.rotation} htmlFor="rotation">
              <input id="rotation" name="rotation" inputMode="decimal" value={rotation} onChange={(e) => setRotation(e.target.value)} />
            </Field>
            <Field label="Layout" control="layout" problems={errors.layout} htmlFor="layout">
              <select id="layout" name="layout" value={layout} onChange={(e) => setLayout(e.target.value as Layout)}>
                <option value="straight">Straight</option>
                <option value="brick">Brick</option>
                <option value="herringbone">Herringbone</option>
              </select>
            </Field>
            {layout === "brick" && (
              <Field label="Row offset" control="" htmlFor="row-offset">
                <input id="row-offset" name="row-offset" inputMode="decimal" value={rowOffset} onChange={(e) => setRowOffset(e.target.value)} />
              </Field>
            )}
          </div>

          <Field label="Output" control="output" problems={errors.output}>
            <div className="row-fields">
              <select aria-label="Format" value={format} onChange={(e) => setFormat(e.target.value)}>
                <option value="jpeg">JPEG</option>
                <option value="png">PNG</option>
                <option value="webp">WebP</option>
              </select>
              <label className="check">
                <input type="checkbox" checked={include2048} onChange={(e) => setInclude2048(e.target.checked)} /> Also 2048 px
              </label>
            </div>
          </Field>

          {errors[""] && <FieldError control="form" problems={errors[""]} />}
          {hasProblems(errors) && !errors[""] && (
            <Alert>The request was refused: see the fields marked above.</Alert>
          )}
          <Button type="submit" variant="primary" loading={submitting} data-testid="submit-swap" className="btn-block">
            {submitting ? "Submitting…" : "Render"}
          </Button>
        </section>
      </div>
    </form>
  );
}
