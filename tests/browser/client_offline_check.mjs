// The TypeScript client against a fetch that answers as the gateway's HTTP port would (Connect's
// streaming framing), for what needs no stack: a credential no header can carry refused at once,
// an empty apiKey leaving the token, readOutput's size and SHA-256 check and its idle limit, and
// a watch's idle limit not counting the time the caller holds an event. Prints one JSON line for
// tests/browser/test_typescript_client.py to check.
// Usage: node client_offline_check.mjs DIST_INDEX
import { createHash } from "node:crypto";
import { pathToFileURL } from "node:url";

const [dist] = process.argv.slice(2);
const {
  create,
  createRenderClient,
  GetOutputResponseSchema,
  JobState,
  readOutput,
  retryDelayMs,
  watchJob,
  WatchJobResponseSchema,
} = await import(pathToFileURL(dist).href);
const { toBinary } = await import(pathToFileURL(dist.replace(/dist\/index\.js$/, "node_modules/@bufbuild/protobuf/dist/esm/index.js")).href);

const envelope = (flags, bytes) => {
  const out = new Uint8Array(5 + bytes.length);
  out[0] = flags;
  new DataView(out.buffer).setUint32(1, bytes.length);
  out.set(bytes, 5);
  return out;
};
const END = envelope(2, new TextEncoder().encode("{}"));
// A Connect server stream of these messages; it ends (with its end-of-stream message) unless told
// to hang, and fails once the call's signal aborts, as a real fetch's body does.
const streaming = (messages, { hang = false } = {}) => (input, init) => {
  let stream;
  const body = new ReadableStream({
    start(controller) {
      stream = controller;
      for (const message of messages) controller.enqueue(message);
      if (!hang) {
        controller.enqueue(END);
        controller.close();
      }
    },
  });
  init?.signal?.addEventListener("abort", () => {
    try {
      stream.error(init.signal.reason ?? new DOMException("aborted", "AbortError"));
    } catch {}
  });
  return Promise.resolve(new Response(body, { status: 200, headers: { "content-type": "application/connect+proto" } }));
};
const baseUrl = "http://gateway.invalid";
const report = {};

// Credentials: refused when a header cannot carry them; an empty apiKey leaves the token.
report.badKeys = [];
for (const apiKey of ["rk_a_b\u200b", "rk_a\r\nb"]) {
  try {
    createRenderClient({ baseUrl, apiKey });
    report.badKeys.push("accepted");
  } catch (error) {
    report.badKeys.push(error.message);
  }
}
let sent = "";
const recording = async (input, init) => {
  sent = new Headers(init?.headers).get("authorization");
  return new Response(new Uint8Array(), { status: 200, headers: { "content-type": "application/proto" } });
};
const sends = async (options) => {
  sent = "";
  try {
    await createRenderClient({ baseUrl, fetch: recording, ...options }).getBalance({});
    return sent;
  } catch (error) {
    return `thrown: ${error.message}`;
  }
};
report.tokenSent = await sends({ apiKey: "", token: "a.b.c" });
report.trimmedSent = await sends({ apiKey: "rk_a_b\n" });

// readOutput: the bytes checked against what the gateway announced.
const data = new TextEncoder().encode("the output's bytes");
const sha256 = createHash("sha256").update(data).digest("hex");
const output = (announced, pieces) =>
  streaming([
    envelope(0, toBinary(GetOutputResponseSchema, create(GetOutputResponseSchema, { file: { name: "full", ...announced } }))),
    ...pieces.map((piece) => envelope(0, toBinary(GetOutputResponseSchema, create(GetOutputResponseSchema, { data: piece })))),
  ]);
const read = async (fetch, options) => {
  try {
    const { data: got } = await readOutput(createRenderClient({ baseUrl, apiKey: "k", fetch }), "j", "full", options);
    return `ok ${got.length}`;
  } catch (error) {
    return `${error.code} ${error.message}`;
  }
};
const damaged = Uint8Array.from(data);
damaged[3] ^= 0xff;
report.read = {
  good: await read(output({ sizeBytes: BigInt(data.length), sha256 }, [data.slice(0, 5), data.slice(5)])),
  short: await read(output({ sizeBytes: BigInt(data.length + 1), sha256 }, [data])),
  damaged: await read(output({ sizeBytes: BigInt(data.length), sha256 }, [damaged])),
};
// A stream that announces the file and then sends nothing.
const silent = (input, init) => streaming([envelope(0, toBinary(GetOutputResponseSchema, create(GetOutputResponseSchema, { file: { name: "full" } })))], { hang: true })(input, init);
const started = Date.now();
report.read.silent = await read(silent, { idleTimeoutMs: 200 });
report.read.silentMs = Date.now() - started;

// A watch whose caller holds an event longer than the idle limit: not a silent connection.
let calls = 0;
const events = [JobState.QUEUED, JobState.RUNNING, JobState.SUCCEEDED].map((state, i) =>
  envelope(0, toBinary(WatchJobResponseSchema, create(WatchJobResponseSchema, { event: { jobId: "j", cursor: `c${i}`, state } }))),
);
const watching = (input, init) => {
  calls += 1;
  return streaming(events, { hang: true })(input, init);
};
const reconnects = [];
const seen = [];
for await (const event of watchJob(createRenderClient({ baseUrl, apiKey: "k", fetch: watching }), "j", {
  idleTimeoutMs: 100,
  initialDelayMs: 1,
  onReconnect: ({ error }) => reconnects.push(error.message),
})) {
  seen.push(event.cursor);
  if (seen.length === 1) await new Promise((resolve) => setTimeout(resolve, 400));
}
report.watch = { calls, reconnects, seen };
// A submit over the tenant's rate: RESOURCE_EXHAUSTED with RetryInfo (1.5 s), as Connect's JSON
// error; a detail that does not decode says nothing.
const refusing = (details) => async () =>
  new Response(JSON.stringify({ code: "resource_exhausted", message: "over the rate", details }), {
    status: 429,
    headers: { "content-type": "application/json" },
  });
// RetryInfo { retry_delay: Duration { seconds: 1, nanos: 500000000 } }
const retryInfo = Buffer.from([0x0a, 0x08, 0x08, 0x01, 0x10, 0x80, 0xca, 0xb5, 0xee, 0x01]).toString("base64");
report.retry = [];
for (const details of [[{ type: "google.rpc.RetryInfo", value: retryInfo }], [{ type: "google.rpc.RetryInfo", value: "/w" }], []]) {
  const client = createRenderClient({ baseUrl, apiKey: "rk_a_b", fetch: refusing(details) });
  try {
    await client.getBalance({});
    report.retry.push("answered");
  } catch (error) {
    report.retry.push(retryDelayMs(error) ?? null);
  }
}
console.log(JSON.stringify(report));
