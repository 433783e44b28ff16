/** A texture edit: an image model repaints a texture (inside an optional mask) as a prompt says. */

import { useRef, useState, type FormEvent } from "react";

import { create, SubmitRenderRequestSchema, type RenderClient } from "@render-pipeline/client";
import { fieldErrors, hasProblems, TEXTURE_CONTROLS, type FieldErrors } from "../errors";
import { useRequestKey } from "../idempotency";
import { rememberInputs, type Picture } from "../images";
import { go } from "../routes";
import type { Sample } from "../samples";
import { ImagePicker } from "./ImagePicker";
import { Alert, Button, Field, FieldError, useFocusOnProblems } from "./ui";

export function TextureForm({ client, sample }: { client: RenderClient; sample: Sample | null }) {
  const [texture, setTexture] = useState<Picture[]>([]);
  const [mask, setMask] = useState<Picture[]>([]);
  const [prompt, setPrompt] = useState("");
  const [dryRun, setDryRun] = useState(true);
  const [errors, setErrors] = useState<FieldErrors>({});
  const [submitting, setSubmitting] = useState(false);
  const requestKey = useRequestKey();
  const form = useRef<HTMLFormElement>(null);
  useFocusOnProblems(form, errors);

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setSubmitting(true);
    setErrors({});
    try {
      const base = texture[0];
      const request = create(SubmitRenderRequestSchema, {
        kind: {
          case: "textureEdit",
          value: {
            ...(base ? { baseTexture: { source: { case: "assetId", value: base.assetId } } } : {}),
            ...(mask[0] ? { mask: { source: { case: "assetId", value: mask[0].assetId } } } : {}),
            prompt,
            options: { dryRun },
          },
        },
      });
      request.idempotencyKey = requestKey.keyFor(request);
      const { job } = await client.submitRender(request);
      if (!job) throw new Error("the server returned no job");
      requestKey.answered();
      rememberInputs(job.id, {
        ...(base ? { photo: { url: base.url, width: base.width, height: base.height } } : {}),
        swatches: [],
      });
      go({ name: "job", id: job.id });
    } catch (e) {
      setErrors(fieldErrors(e, TEXTURE_CONTROLS));
    } finally {
      setSubmitting(false);
    }
  };

  return (
    <form className="card stack narrow" onSubmit={submit} noValidate ref={form}>
      <h2>Texture edit</h2>
      <p className="muted">Repaint a texture with a prompt, everywhere or inside a mask (white where it may change).</p>
      <Field label="Texture" control="texture" problems={errors.texture}>
        <ImagePicker client={client} id="texture" label="Texture" pictures={texture} onChange={setTexture} samples={sample?.swatches ?? []} />
      </Field>
      <Field label="Mask (optional)" control="mask" problems={errors.mask}>
        <ImagePicker client={client} id="texture-mask" label="Mask" pictures={mask} onChange={setMask} />
      </Field>
      <Field label="Prompt" htmlFor="prompt" control="prompt" problems={errors.prompt}>
        <textarea id="prompt" rows={3} placeholder="darker walnut stain, satin finish" value={prompt} onChange={(e) => setPrompt(e.target.value)} />
      </Field>
      <FieldError control="options" problems={errors.options} />
      <label className="check">
        <input type="checkbox" checked={dryRun} onChange={(e) => setDryRun(e.target.checked)} /> Dry run (call no provider)
      </label>
      {errors[""] && <FieldError control="form" problems={errors[""]} />}
      {hasProblems(errors) && !errors[""] && <Alert>The request was refused: see the fields marked above.</Alert>}
      <Button type="submit" variant="primary" loading={submitting} className="btn-block">
        Edit the texture
      </Button>
    </form>
  );
}
