// The TypeScript client in Node, as its README example uses it: uploads, a refused submit's field
// violations, a submit and its events through watchJob, the same in one call through
// submitAndWatch (whole, for its outcome only, cut after two events, and lost before the first),
// over the protocol given. Prints one JSON line for
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
// Only the outcome: the first event (which names the job) and the terminal one, in one call; then
// the same job watched for its outcome alone.
const outcome = [];
for await (const event of submitAndWatch(client, request(quad), { outcomeOnly: true })) {
  outcome.push({ jobId: event.jobId, cursor: event.cursor, state: event.state });
}
const outcomeWatched = [];
for await (const event of watchJob(client, outcome[0].jobId, { outcomeOnly: true })) {
  outcomeWatched.push({ cursor: event.cursor, state: event.state });
}
// Past the ended job's last event nothing will follow: thrown at once, not retried.
let pastEnd = "";
const pastEndCalls = [];
const counting = async (input, init) => {
  pastEndCalls.push(String(input instanceof Request ? input.url : input));
  return fetch(input, init);
};
try {
  const countingClient = createRenderClient({ baseUrl, apiKey, protocol, fetch: counting });
  for await (const event of watchJob(countingClient, outcome[0].jobId, { after: outcome[1].cursor })) {
    pastEnd = `unexpected event ${event.cursor}`;
  }
} catch (error) {
  pastEnd = pastEnd || String(error.code ?? "no code");
}
// The same again with the one-call stream cut after its first two events (no end of stream, as a
// dropped connection ends): the client goes on with WatchJob from the second event's cursor.
const cutAfter = (messages, calls) => async (input, init) => {
  const url = String(input instanceof Request ? input.url : input);
  calls.push(url.slice(url.lastIndexOf("/") + 1));
  const response = await fetch(input, init);
  if (!url.endsWith("/SubmitAndWatch")) {
    return response;
  }
  const body = new Uint8Array(await response.arrayBuffer());
  let end = 0;
  for (let kept = 0; kept < messages && end + 5 <= body.length; kept += 1) {
    end += 5 + new DataView(body.buffer, body.byteOffset + end + 1, 4).getUint32(0);
  }
  return new Response(body.slice(0, end), { status: response.status, headers: response.headers });
};
const calls = [];
const resumed = [];
const cutClient = createRenderClient({ baseUrl, apiKey, protocol, fetch: cutAfter(2, calls) });
for await (const event of submitAndWatch(cutClient, request(quad), { initialDelayMs: 10 })) {
  resumed.push({ jobId: event.jobId, cursor: event.cursor, state: event.state });
}
// For the outcome alone, cut after its first event: the WatchJob it goes on with asks for the
// outcome too, so the terminal event is all that follows.
const outcomeCalls = [];
const outcomeResumed = [];
const outcomeCut = createRenderClient({ baseUrl, apiKey, protocol, fetch: cutAfter(1, outcomeCalls) });
for await (const event of submitAndWatch(outcomeCut, request(quad), { initialDelayMs: 10, outcomeOnly: true })) {
  outcomeResumed.push(event.state);
}
// The first SubmitAndWatch's reply lost before its first event (the gateway has the request and
// runs the job; the connection drops): with an idempotency key the client makes the call again
// and the gateway streams the first request's job from its start; without one the error is thrown.
let droppedAt = 0;
const dropping = (calls) => {
  let dropped = false;
  return async (input, init) => {
    const url = String(input instanceof Request ? input.url : input);
    calls.push(url.slice(url.lastIndexOf("/") + 1));
    const response = await fetch(input, init);
    if (dropped || !url.endsWith("/SubmitAndWatch")) {
      return response;
    }
    dropped = true;
    await response.arrayBuffer(); // the gateway ran the job to its end; the client sees none of it
    droppedAt = Date.now();
    throw new TypeError("fetch failed");
  };
};
const repeatCalls = [];
const keyed = request(quad);
keyed.idempotencyKey = `node-${protocol}-${Date.now()}`;
const repeated = [];
const repeatClient = createRenderClient({ baseUrl, apiKey, protocol, fetch: dropping(repeatCalls) });
for await (const event of submitAndWatch(repeatClient, keyed, { initialDelayMs: 10 })) {
  const ms = Number(event.time?.seconds ?? 0) * 1000 + (event.time?.nanos ?? 0) / 1e6;
  repeated.push({ jobId: event.jobId, cursor: event.cursor, state: event.state, ms });
}
const unkeyedCalls = [];
let unkeyedError = "";
try {
  const unkeyedClient = createRenderClient({ baseUrl, apiKey, protocol, fetch: dropping(unkeyedCalls) });
  for await (const event of submitAndWatch(unkeyedClient, request(quad), { initialDelayMs: 10 })) {
    unkeyedError = `unexpected event ${event.cursor}`;
  }
} catch (error) {
  unkeyedError = unkeyedError || String(error.code ?? "no code");
}
// A slow upload: the request takes longer to go up than the idle limit, which counts only from
// the first message (after it, silences as long go on as watches, as any would).
const slowly = async (input, init) => {
  if (String(input instanceof Request ? input.url : input).endsWith("/SubmitAndWatch")) {
    await new Promise((resolve) => setTimeout(resolve, 2500));
  }
  return fetch(input, init);
};
const slow = [];
const slowClient = createRenderClient({ baseUrl, apiKey, protocol, fetch: slowly });
const quick = { idleTimeoutMs: 2000, initialDelayMs: 10, maxDelayMs: 200 };
for await (const event of submitAndWatch(slowClient, request(quad), quick)) {
  slow.push(event.state);
}
console.log(
  JSON.stringify({
    jobId: job.id,
    violations,
    events,
    followed,
    outcome,
    outcomeWatched,
    pastEnd,
    pastEndCalls: pastEndCalls.length,
    resumed,
    calls,
    outcomeResumed,
    outcomeCalls,
    repeated,
    repeatCalls,
    droppedAt,
    unkeyedCalls,
    unkeyedError,
    slow,
    fullBytes: full.data.length,
    fullSize: Number(full.file.sizeBytes),
  }),
);
