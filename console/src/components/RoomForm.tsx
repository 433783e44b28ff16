/** A room render: a room described by its type, size, materials and style, rendered by an image model. */

import { useRef, useState, type FormEvent } from "react";

import { create, Lighting, SubmitRenderRequestSchema, TimeOfDay, type RenderClient } from "@render-pipeline/client";
import { fieldErrors, hasProblems, ROOM_CONTROLS, type FieldErrors } from "../errors";
import { useRequestKey } from "../idempotency";
import { rememberInputs } from "../images";
import { go } from "../routes";
import { Alert, Button, errorId, Field, FieldError, useFocusOnProblems } from "./ui";

const SURFACES = ["floor", "walls", "ceiling"] as const;
type SurfaceName = (typeof SURFACES)[number];

export function RoomForm({ client }: { client: RenderClient }) {
  const [roomType, setRoomType] = useState("living room");
  const [area, setArea] = useState("24");
  const [materials, setMaterials] = useState<Record<SurfaceName, { name: string; description: string }>>({
    floor: { name: "Oak Natural 190", description: "wide oak planks, matte oil finish" },
    walls: { name: "", description: "" },
    ceiling: { name: "", description: "" },
  });
  const [style, setStyle] = useState("scandinavian");
  const [lighting, setLighting] = useState<Lighting>(Lighting.NATURAL);
  const [timeOfDay, setTimeOfDay] = useState<TimeOfDay>(TimeOfDay.DAY);
  const [additions, setAdditions] = useState("");
  const [dryRun, setDryRun] = useState(true);
  const [errors, setErrors] = useState<FieldErrors>({});
  const [submitting, setSubmitting] = useState(false);
  const requestKey = useRequestKey();
  const form = useRef<HTMLFormElement>(null);
  useFocusOnProblems(form, errors);

  const setMaterial = (surface: SurfaceName, key: "name" | "description", value: string) =>
    setMaterials((m) => ({ ...m, [surface]: { ...m[surface], [key]: value } }));

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setSubmitting(true);
    setErrors({});
    try {
      const picked = Object.fromEntries(
        SURFACES.filter((s) => materials[s].name || materials[s].description).map((s) => [s, materials[s]]),
      );
      const request = create(SubmitRenderRequestSchema, {
        kind: {
          case: "roomRender",
          value: {
            room: { roomType, areaSquareMeters: area.trim() ? Number(area) : 0 },
            materials: picked,
            options: { stylePreset: style, lighting, timeOfDay, additionalPrompt: additions, dryRun },
          },
        },
      });
      request.idempotencyKey = requestKey.keyFor(request);
      const { job } = await client.submitRender(request);
      if (!job) throw new Error("the server returned no job");
      requestKey.answered();
      rememberInputs(job.id, { swatches: [] });
      go({ name: "job", id: job.id });
    } catch (e) {
      setErrors(fieldErrors(e, ROOM_CONTROLS));
    } finally {
      setSubmitting(false);
    }
  };

  return (
    <form className="card stack narrow" onSubmit={submit} noValidate ref={form}>
      <h2>Room render</h2>
      <p className="muted">A room generated from its description by the image provider (OpenAI when configured).</p>
      <div className="row-fields">
        <Field label="Room type" htmlFor="room-type" control="roomType" problems={errors.roomType}>
          <input id="room-type" list="room-types" value={roomType} onChange={(e) => setRoomType(e.target.value)} />
          <datalist id="room-types">
            {["living room", "kitchen", "bedroom", "bathroom", "dining room", "office", "hallway"].map((t) => (
              <option key={t} value={t} />
            ))}
          </datalist>
        </Field>
        <Field label="Area (m²)" htmlFor="area" control="area" problems={errors.area}>
          <input id="area" inputMode="decimal" value={area} onChange={(e) => setArea(e.target.value)} />
        </Field>
      </div>
      <fieldset className="stack" data-control="materials" aria-describedby={errors.materials?.length ? errorId("materials") : undefined}>
        <legend className="field-label">Materials</legend>
        {SURFACES.map((s) => (
          <div key={s} className="row-fields">
            <span className="material-surface">{s}</span>
            <input aria-label={`${s} product`} placeholder="Product name" value={materials[s].name} onChange={(e) => setMaterial(s, "name", e.target.value)} />
            <input
              aria-label={`${s} description`}
              placeholder="Description"
              value={materials[s].description}
              onChange={(e) => setMaterial(s, "description", e.target.value)}
            />
          </div>
        ))}
        <FieldError control="materials" problems={errors.materials} />
      </fieldset>
      <div className="row-fields">
        <Field label="Style" htmlFor="style" control="style" problems={errors.style}>
          <select id="style" value={style} onChange={(e) => setStyle(e.target.value)}>
            {["modern", "scandinavian", "industrial", "minimalist", "rustic", "classic"].map((s) => (
              <option key={s} value={s}>
                {s}
              </option>
            ))}
          </select>
        </Field>
        <Field label="Lighting" htmlFor="lighting">
          <select id="lighting" value={lighting} onChange={(e) => setLighting(Number(e.target.value) as Lighting)}>
            <option value={Lighting.NATURAL}>Natural</option>
            <option value={Lighting.WARM}>Warm</option>
            <option value={Lighting.COOL}>Cool</option>
            <option value={Lighting.DRAMATIC}>Dramatic</option>
          </select>
        </Field>
        <Field label="Time of day" htmlFor="time-of-day">
          <select id="time-of-day" value={timeOfDay} onChange={(e) => setTimeOfDay(Number(e.target.value) as TimeOfDay)}>
            <option value={TimeOfDay.DAY}>Day</option>
            <option value={TimeOfDay.EVENING}>Evening</option>
            <option value={TimeOfDay.NIGHT}>Night</option>
          </select>
        </Field>
      </div>
      <Field label="Also add" htmlFor="additions" control="additions" problems={errors.additions}>
        <textarea id="additions" rows={2} placeholder="a grey sofa, plants by the window" value={additions} onChange={(e) => setAdditions(e.target.value)} />
      </Field>
      <FieldError control="options" problems={errors.options} />
      <label className="check">
        <input type="checkbox" checked={dryRun} onChange={(e) => setDryRun(e.target.checked)} /> Dry run (build the prompt and
        estimate the cost; call no provider)
      </label>
      {errors[""] && <FieldError control="form" problems={errors[""]} />}
      {hasProblems(errors) && !errors[""] && <Alert>The request was refused: see the fields marked above.</Alert>}
      <Button type="submit" variant="primary" loading={submitting} className="btn-block">
        Render the room
      </Button>
    </form>
  );
}
