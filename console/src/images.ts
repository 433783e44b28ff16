/** Images the console sends: uploaded once with UploadAsset, then named by asset id. */

import type { RenderClient } from "@render-pipeline/client";

/** An uploaded image, with what the console shows of it. */
export interface Picture {
  assetId: string;
  name: string;
  /** What an <img> shows: an object URL of the file, or the sample's own URL. */
  url: string;
  /** The displayed size in pixels (EXIF orientation applied), as the server measured it. */
  width: number;
  height: number;
  /** The bundled sample's URL, when it is one (kept with the job to show it again later). */
  sampleUrl?: string;
}

export const ACCEPTED_TYPES = "image/jpeg,image/png,image/webp";

/** How long an upload's body may take to arrive: the gateway waits 60 s for a body whose call
 * sets no deadline, too short for a 12 MP phone photo (5 to 10 MB) on a slow uplink (under about
 * 1 Mbit/s); with a deadline it waits up to 5 minutes (MAX_BODY_TIMEOUT_S), so ask for that. */
export const UPLOAD_TIMEOUT_MS = 300_000;

/** Uploads an image (UploadAsset) and returns it as a Picture. */
export async function upload(client: RenderClient, blob: Blob, name: string, sampleUrl?: string): Promise<Picture> {
  const data = new Uint8Array(await blob.arrayBuffer());
  const { asset } = await client.uploadAsset({ data, name: name.slice(0, 200) }, { timeoutMs: UPLOAD_TIMEOUT_MS });
  if (!asset) {
    throw new Error("the server returned no asset");
  }
  return {
    assetId: asset.id,
    name,
    url: sampleUrl ?? URL.createObjectURL(blob),
    width: asset.width,
    height: asset.height,
    ...(sampleUrl ? { sampleUrl } : {}),
  };
}

/** Fetches a bundled sample and uploads it. */
export async function uploadSample(client: RenderClient, url: string, name: string): Promise<Picture> {
  const response = await fetch(url);
  if (!response.ok) {
    throw new Error(`the sample ${url} is missing (${response.status}): run make console`);
  }
  return upload(client, await response.blob(), name, url);
}

/** What a finished job's view shows as "before": the photo it was submitted with. */
export interface JobInputs {
  photo?: { url: string; width: number; height: number };
  swatches: string[];
}

// Kept for the tab's life; the sample URLs (not object URLs, which die with the page) also in
// sessionStorage so a reload still shows them.
const inputs = new Map<string, JobInputs>();
const STORED = "render-console.job-inputs";

function stored(): Record<string, JobInputs> {
  try {
    return JSON.parse(sessionStorage.getItem(STORED) ?? "{}") as Record<string, JobInputs>;
  } catch {
    return {};
  }
}

export function rememberInputs(jobId: string, value: JobInputs): void {
  inputs.set(jobId, value);
  if (value.photo && !value.photo.url.startsWith("blob:")) {
    const all = stored();
    all[jobId] = value;
    const ids = Object.keys(all);
    for (const old of ids.slice(0, Math.max(0, ids.length - 50))) {
      delete all[old];
    }
    sessionStorage.setItem(STORED, JSON.stringify(all));
  }
}

export function inputsOf(jobId: string): JobInputs | undefined {
  return inputs.get(jobId) ?? stored()[jobId];
}
