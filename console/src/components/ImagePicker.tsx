/** Pick images: upload files (UploadAsset) or take bundled samples; thumbnails of what is picked. */

import { useRef, useState, type ChangeEvent } from "react";

import type { RenderClient } from "@render-pipeline/client";
import { describe } from "../errors";
import { ACCEPTED_TYPES, upload, uploadSample, type Picture } from "../images";
import { Button } from "./ui";

export interface SampleChoice {
  name: string;
  url: string;
}

export function ImagePicker({
  client,
  id,
  pictures,
  onChange,
  multiple = false,
  max = 9,
  samples = [],
  captions,
  label,
}: {
  client: RenderClient;
  id: string;
  /** What is picked ("Room or facade photo"): the name of the file input. */
  label: string;
  pictures: Picture[];
  onChange: (pictures: Picture[]) => void;
  multiple?: boolean;
  max?: number;
  samples?: SampleChoice[];
  captions?: (index: number) => string;
}) {
  const [busy, setBusy] = useState(0);
  const [error, setError] = useState("");
  const input = useRef<HTMLInputElement>(null);
  // The latest list, for uploads that finish after others changed it.
  const latest = useRef(pictures);
  latest.current = pictures;

  const add = async (work: Promise<Picture>[]) => {
    setError("");
    setBusy((n) => n + work.length);
    for (const next of work) {
      try {
        const picture = await next;
        const list = multiple ? [...latest.current, picture].slice(0, max) : [picture];
        latest.current = list;
        onChange(list);
      } catch (e) {
        setError(describe(e));
      } finally {
        setBusy((n) => n - 1);
      }
    }
  };

  const onFiles = (event: ChangeEvent<HTMLInputElement>) => {
    const files = Array.from(event.target.files ?? []);
    event.target.value = "";
    void add(files.map((file) => upload(client, file, file.name)));
  };

  const remove = (index: number) => onChange(pictures.filter((_, i) => i !== index));
  const full = multiple ? pictures.length >= max : false;

  return (
    <div className="picker" data-picker={id}>
      {pictures.length > 0 && (
        <ul className="thumbs">
          {pictures.map((p, i) => (
            <li key={`${p.assetId}-${i}`} className="thumb" data-asset-id={p.assetId}>
              <img src={p.url} alt={p.name} loading="lazy" />
              <div className="thumb-meta">
                <span className="thumb-caption">{captions ? captions(i) : p.name}</span>
                <span className="muted">
                  {p.width}×{p.height}
                </span>
              </div>
              <button type="button" className="thumb-remove" aria-label={`Remove ${p.name}`} onClick={() => remove(i)}>
                ×
              </button>
            </li>
          ))}
        </ul>
      )}
      <div className="picker-actions">
        <input
          ref={input}
          id={`${id}-file`}
          className="visually-hidden"
          type="file"
          // Opened by the Upload button; not a Tab stop of its own (it is 1 px and shows no focus).
          tabIndex={-1}
          aria-label={label}
          accept={ACCEPTED_TYPES}
          multiple={multiple}
          onChange={onFiles}
          data-testid={`${id}-file`}
        />
        <Button onClick={() => input.current?.click()} loading={busy > 0} disabled={full}>
          {busy > 0 ? "Uploading…" : multiple ? "Upload images" : pictures.length ? "Replace" : "Upload an image"}
        </Button>
        {samples.map((s) => (
          <Button
            key={s.url}
            variant="ghost"
            disabled={full}
            // Refused while an upload runs, but not disabled: that would drop the keyboard focus.
            aria-disabled={busy > 0 || undefined}
            onClick={() => {
              if (busy === 0) void add([uploadSample(client, s.url, s.name)]);
            }}
            data-sample={s.name}
          >
            + sample {s.name}
          </Button>
        ))}
      </div>
      {error && (
        <p className="field-error" role="alert">
          {error}
        </p>
      )}
    </div>
  );
}
