// The TypeScript client in Node, as its README example uses it: uploads, a refused submit's field
// violations, a submit and its events through watchJob, the same in one call through
// submitAndWatch, over the protocol given. Prints one JSON line for
// tests/browser/test_typescript_client.py to check.
// Usage: node client_check.mjs DIST_INDEX BASE_URL API_KEY PROTOCOL PHOTO SWATCH QUAD_JSON
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const [dist, baseUrl, apiKey, protocol, photoPath, swatchPath, quadJson] = process.argv.slice(2);
const { create, createRenderClient, fieldViolations, readOutput, SubmitRenderRequestSchema, submitAndWatch, watchJob } =
  await import(pathToFileURL(dist).href);

const client = createRenderClient({ baseUrl, apiKey, protocol });
const upload = async (path, name) => (await client.uploadAsset({ data: readFileSync(path), name })).asset.id;
const photo = await upload(photoPath, "photo.jpg");
const swatch = await upload(swatchPath, "swatch.jpg");
const quad = JSON.parse(quadJson).map(([x, y]) => ({ x, y }));
const request = (corners) =>
  create(SubmitRenderRequestSchema, {
    kind: {
      case: "materialSwap",
      value: {
        photo: { source: { case: "assetId", value: photo } },
        swatch: { source: { case: "assetId", value: swatch } },
        hints: { quad: corners },
      },
    },
  });

let violations = [];
try {
  await client.submitRender(request(quad.slice(0, 3)));
} catch (error) {
  violations = fieldViolations(error);
}
const { job } = await client.submitRender(request(quad));
const events = [];
for await (const event of watchJob(client, job.id)) {
  events.push({ cursor: event.cursor, state: event.state, message: event.message, outputs: event.result?.outputs.length ?? 0 });
}
const full = await readOutput(client, job.id, "full");
const followed = [];
for await (const event of submitAndWatch(client, request(quad))) {
  followed.push({ jobId: event.jobId, cursor: event.cursor, state: event.state });
}
console.log(
  JSON.stringify({ jobId: job.id, violations, events, followed, fullBytes: full.data.length, fullSize: Number(full.file.sizeBytes) }),
);
