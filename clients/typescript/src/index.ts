/**
 * The TypeScript client of the render pipeline's public API.
 *
 * `createRenderClient` talks to the gateway's HTTP port over Connect or gRPC-web (browsers and
 * Node alike: both need only `fetch`) and sends the bearer credential on every call;
 * `watchJob` follows a job's progress and resumes after a dropped connection from the last
 * cursor it saw, so no event is missed or repeated; `submitAndWatch` submits and follows in one
 * call. The messages and service descriptors are
 * generated from protos/ into src/gen (scripts/gen_protos.sh); build requests with `create`.
 */

import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import {
  Code,
  ConnectError,
  createClient,
  type Client,
  type Interceptor,
  type Transport,
} from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";

import { AdminService } from "./gen/render/admin/v1/admin_service_pb.js";
import {
  GetOutputRequestSchema,
  JobState,
  RenderService,
  type JobEvent,
  type OutputFile,
  type SubmitRenderRequestSchema,
} from "./gen/render/v1/render_service_pb.js";

export * from "./gen/render/v1/render_service_pb.js";
export * as admin from "./gen/render/admin/v1/admin_service_pb.js";
export { create, fromJson, toJson, type MessageInitShape } from "@bufbuild/protobuf";
export { timestampDate } from "@bufbuild/protobuf/wkt";
export { Code, ConnectError } from "@connectrpc/connect";

/** The wire protocol to the gateway's HTTP port. */
export type Protocol = "connect" | "grpc-web";

/** How to reach the gateway and who the caller is. */
export interface RenderClientOptions {
  /** The gateway's HTTP port, such as "http://127.0.0.1:8080" (a path prefix is kept). */
  baseUrl: string;
  /** An API key (rk_<id>_<secret>); sent as `authorization: Bearer <key>`. */
  apiKey?: string;
  /** A JWT of the gateway's configured issuer, instead of an API key. */
  token?: string;
  /** Connect (the default: JSON-free binary messages over plain HTTP) or gRPC-web. */
  protocol?: Protocol;
  /** A fetch to use instead of the global one (tests, proxies, Node without a global fetch). */
  fetch?: typeof globalThis.fetch;
  /** More interceptors, run after the one that adds the credential. */
  interceptors?: Interceptor[];
  /** Send JSON instead of binary protobuf (Connect only; easier to read in a browser's network tab). */
  useJson?: boolean;
}

/** A client of render.v1.RenderService. */
export type RenderClient = Client<typeof RenderService>;
/** A client of render.admin.v1.AdminService (needs a credential with the admin scope). */
export type AdminClient = Client<typeof AdminService>;

/** An interceptor that sends `authorization: Bearer <credential>` on every call. */
export function bearer(credential: string): Interceptor {
  const value = `Bearer ${credential}`;
  return (next) => async (request) => {
    request.header.set("authorization", value);
    return await next(request);
  };
}

/** The transport createRenderClient and createAdminClient use, for other Connect clients. */
export function createRenderTransport(options: RenderClientOptions): Transport {
  // An empty apiKey (an unset variable read as "") leaves the token to be used. Surrounding
  // whitespace (a key read from a file with its newline) is dropped; any other character a header
  // cannot carry is refused here: fetch would fail every call with a TypeError, which watchJob and
  // submitAndWatch take for a dropped connection and retry until they give up.
  const credential = (options.apiKey || options.token || "").trim();
  if (!credential) {
    throw new Error("createRenderClient needs an apiKey or a token");
  }
  if (!/^[\x20-\x7e]+$/.test(credential)) {
    throw new Error("the credential holds a character that cannot be sent (a control character or non-ASCII)");
  }
  const common = {
    baseUrl: options.baseUrl.replace(/\/+$/, ""),
    interceptors: [bearer(credential), ...(options.interceptors ?? [])],
    ...(options.fetch ? { fetch: options.fetch } : {}),
  };
  if (options.protocol === "grpc-web") {
    return createGrpcWebTransport({ ...common, useBinaryFormat: true });
  }
  return createConnectTransport({ ...common, useBinaryFormat: !options.useJson });
}

/** A client of the public API on the gateway's HTTP port. */
export function createRenderClient(options: RenderClientOptions): RenderClient {
  return createClient(RenderService, createRenderTransport(options));
}

/** A client of the admin API on the gateway's HTTP port. */
export function createAdminClient(options: RenderClientOptions): AdminClient {
  return createClient(AdminService, createRenderTransport(options));
}

/** Whether a job state is one a job never leaves. */
export function isTerminal(state: JobState): boolean {
  return state === JobState.SUCCEEDED || state === JobState.FAILED || state === JobState.CANCELLED;
}

/** What watchJob says before it reconnects. */
export interface Reconnect {
  /** Consecutive failed connections so far (1 on the first retry). */
  attempt: number;
  /** How long it waits before connecting again. */
  delayMs: number;
  /** Why the connection ended. */
  error: ConnectError;
  /** The cursor it resumes after ("" when no event was seen yet). */
  after: string;
}

/** How watchJob follows a job. */
export interface WatchOptions {
  /** The cursor of the last event already seen; "" (the default) replays every event. */
  after?: string;
  /** Stops watching (the iteration ends with an AbortError). */
  signal?: AbortSignal;
  /** Called before each reconnection. */
  onReconnect?: (info: Reconnect) => void;
  /** Called each time a connection delivers its first message (an event or a keep-alive). */
  onConnected?: () => void;
  /** The first retry's delay; each later one doubles, with jitter (default 250 ms). */
  initialDelayMs?: number;
  /** The longest delay between retries (default 5 s). */
  maxDelayMs?: number;
  /** Consecutive failed connections before giving up (default 30; any message resets the count). */
  maxAttempts?: number;
  /** A connection silent this long (no event, no keep-alive) is dropped and made again (default
   * 45 s: three of the server's 15 s keep-alives). */
  idleTimeoutMs?: number;
  /** Only the terminal event is wanted (submitAndWatch: the first, QUEUED, and the terminal one):
   * the server sends nothing else but keep-alives, for a caller that waits for the outcome. */
  outcomeOnly?: boolean;
  /** submitAndWatch only: how long its call may take to bring its first message, the request's
   * upload included (default 5 minutes: 48 MiB of inline images at 160 KB/s). */
  firstMessageTimeoutMs?: number;
}

// Errors a new connection cannot fix: the caller's fault, or a decision of the server.
const FINAL_CODES = new Set<Code>([
  Code.InvalidArgument,
  Code.NotFound,
  Code.PermissionDenied,
  Code.Unauthenticated,
  Code.FailedPrecondition,
  Code.Unimplemented,
  Code.OutOfRange, // a cursor at or past an ended job's last event: nothing will follow it
]);

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * A job's progress events, in order, each once, until the job ends (the last event is the
 * terminal one, with the result or the error). A connection that drops, goes silent or ends
 * early is made again after a bounded, jittered backoff, resuming after the last cursor seen;
 * errors no retry can fix (such as NOT_FOUND or UNAUTHENTICATED) end the iteration by throwing.
 */
export function watchJob(
  client: RenderClient,
  jobId: string,
  options: WatchOptions = {},
): AsyncGenerator<JobEvent, void, undefined> {
  return follow(
    (after, signal) => client.watchJob({ jobId, after, outcomeOnly: options.outcomeOnly }, { signal }),
    { mayRetry: () => true, uploading: () => false },
    options,
  );
}

/**
 * Submits a job and yields its events from the first (QUEUED, which names the job) until it
 * ends, in one call (SubmitAndWatch; needs the render and read scopes). A connection that breaks
 * after the first event goes on as watchJob does, from the last cursor seen. One that fails
 * before it is made again only when the request has an idempotency key and the failure is
 * UNAVAILABLE or a dropped connection (the gateway then streams the first request's job);
 * otherwise the error is thrown, since the job may or may not have been recorded. Silence counts
 * from the first message (until then the request may still be uploading), which must come within
 * firstMessageTimeoutMs.
 */
export async function* submitAndWatch(
  client: RenderClient,
  request: MessageInitShape<typeof SubmitRenderRequestSchema>,
  options: Omit<WatchOptions, "after"> = {},
): AsyncGenerator<JobEvent, void, undefined> {
  let jobId = "";
  const keyed = Boolean(request.idempotencyKey);
  const outcomeOnly = options.outcomeOnly;
  const open = (after: string, signal: AbortSignal): AsyncIterable<{ event?: JobEvent }> =>
    jobId
      ? client.watchJob({ jobId, after, outcomeOnly }, { signal })
      : client.submitAndWatch({ request, outcomeOnly }, { signal });
  const rules: FollowRules = {
    mayRetry: (error) => jobId !== "" || (keyed && (error.code === Code.Unavailable || dropped(error))),
    uploading: () => jobId === "",
  };
  for await (const event of follow(open, rules, options)) {
    jobId = event.jobId;
    yield event;
  }
}

/** Whether the connection failed under the call (a fetch that rejects: Unknown in the fetch
 * transports), not the server answering UNKNOWN. */
function dropped(error: ConnectError): boolean {
  return error.code === Code.Unknown && error.cause instanceof TypeError;
}

/** When `follow` may open a new connection after a failed one, and whether the next one starts
 * with an upload (its silence then counts from its first message). */
interface FollowRules {
  mayRetry: (error: ConnectError) => boolean;
  uploading: () => boolean;
}

/** The events of the streams `open` makes, each resumed after the last cursor seen while the
 * rules allow a new connection (see watchJob). */
async function* follow(
  open: (after: string, signal: AbortSignal) => AsyncIterable<{ event?: JobEvent }>,
  rules: FollowRules,
  options: WatchOptions,
): AsyncGenerator<JobEvent, void, undefined> {
  const initialDelay = options.initialDelayMs ?? 250;
  const maxDelay = options.maxDelayMs ?? 5000;
  const maxAttempts = options.maxAttempts ?? 30;
  const idleTimeout = options.idleTimeoutMs ?? 45_000;
  const firstMessageTimeout = options.firstMessageTimeoutMs ?? 300_000;
  let after = options.after ?? "";
  let failures = 0;
  for (;;) {
    options.signal?.throwIfAborted();
    // One controller per connection: the caller's signal, or silence, ends it.
    const connection = new AbortController();
    const onAbort = () => connection.abort(options.signal?.reason);
    options.signal?.addEventListener("abort", onAbort, { once: true });
    let idle: ReturnType<typeof setTimeout> | undefined;
    const armIdle = (ms: number = idleTimeout) => {
      clearTimeout(idle);
      idle = setTimeout(
        () => connection.abort(new ConnectError("no message from the server", Code.DeadlineExceeded)),
        ms,
      );
    };
    let error: ConnectError;
    try {
      // A call that starts with an upload: silence counts from its first message, within a bound.
      armIdle(rules.uploading() ? Math.max(idleTimeout, firstMessageTimeout) : idleTimeout);
      let first = true;
      for await (const message of open(after, connection.signal)) {
        armIdle();
        if (first) {
          first = false;
          failures = 0;
          options.onConnected?.();
        }
        const event = message.event;
        if (!event) {
          continue; // a keep-alive
        }
        after = event.cursor || after;
        // While the caller holds the event the stream is not read: that time is not silence.
        clearTimeout(idle);
        yield event;
        if (isTerminal(event.state)) {
          return;
        }
        armIdle();
      }
      error = new ConnectError("the stream ended before the job did", Code.Unavailable);
    } catch (caught) {
      if (options.signal?.aborted) {
        throw options.signal.reason;
      }
      error = ConnectError.from(caught);
      if (FINAL_CODES.has(error.code)) {
        throw error;
      }
    } finally {
      clearTimeout(idle);
      options.signal?.removeEventListener("abort", onAbort);
      connection.abort();
    }
    failures += 1;
    if (failures > maxAttempts || !rules.mayRetry(error)) {
      throw error;
    }
    const ceiling = Math.min(maxDelay, initialDelay * 2 ** (failures - 1));
    const delayMs = Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
    options.onReconnect?.({ attempt: failures, delayMs, error, after });
    await sleep(delayMs, options.signal);
  }
}

/** Each detail of an error of the given google.rpc type, as the bytes the server encoded. */
function detailsOf(error: unknown, type: string): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const detail of ConnectError.from(error).details) {
    // Details received from the server carry their type name and encoded bytes.
    if ("type" in detail && detail.type === type && detail.value instanceof Uint8Array) {
      out.push(detail.value);
    }
  }
  return out;
}

/**
 * How long a refused call asks its caller to wait before trying again, in milliseconds (its
 * google.rpc.RetryInfo: a RESOURCE_EXHAUSTED over a tenant's request rate says when the next
 * submit is allowed), or undefined when it says nothing. Decoded from the wire format, as
 * fieldViolations is.
 */
export function retryDelayMs(error: unknown): number | undefined {
  for (const value of detailsOf(error, "google.rpc.RetryInfo")) {
    // A detail cut short or malformed (a broken proxy) says nothing: it must not hide the error.
    try {
      const reader = new BinaryReader(value);
      while (reader.pos < reader.len) {
        const [number, wireType] = reader.tag();
        if (number !== 1 || wireType !== WireType.LengthDelimited) {
          reader.skip(wireType);
          continue;
        }
        const duration = new BinaryReader(reader.bytes()); // google.protobuf.Duration
        let seconds = 0;
        let nanos = 0;
        while (duration.pos < duration.len) {
          const [field, kind] = duration.tag();
          if (field === 1 && kind === WireType.Varint) {
            seconds = Number(duration.int64());
          } else if (field === 2 && kind === WireType.Varint) {
            nanos = duration.int32();
          } else {
            duration.skip(kind);
          }
        }
        return Math.max(0, seconds * 1000 + nanos / 1e6);
      }
    } catch {
      continue;
    }
  }
  return undefined;
}

/** One field a request got wrong, from the error's google.rpc.BadRequest. */
export interface FieldViolation {
  /** The field's path in the request, such as "material_swap.hints.quad". */
  field: string;
  /** What is wrong with it, safe to show. */
  description: string;
}

function readFieldViolation(bytes: Uint8Array): FieldViolation {
  const reader = new BinaryReader(bytes);
  const out: FieldViolation = { field: "", description: "" };
  while (reader.pos < reader.len) {
    const [number, wireType] = reader.tag();
    if (number === 1 && wireType === WireType.LengthDelimited) {
      out.field = reader.string();
    } else if (number === 2 && wireType === WireType.LengthDelimited) {
      out.description = reader.string();
    } else {
      reader.skip(wireType);
    }
  }
  return out;
}

/**
 * The field violations of an INVALID_ARGUMENT error (its google.rpc.BadRequest details), or []
 * for any other error. Decoded from the wire format, so no googleapis protos are needed.
 */
export function fieldViolations(error: unknown): FieldViolation[] {
  const out: FieldViolation[] = [];
  for (const value of detailsOf(error, "google.rpc.BadRequest")) {
    // A detail cut short or malformed (a broken proxy) is no violation: it must not hide the error.
    const found: FieldViolation[] = [];
    try {
      const reader = new BinaryReader(value);
      while (reader.pos < reader.len) {
        const [number, wireType] = reader.tag();
        if (number === 1 && wireType === WireType.LengthDelimited) {
          found.push(readFieldViolation(reader.bytes()));
        } else {
          reader.skip(wireType);
        }
      }
    } catch {
      continue;
    }
    out.push(...found);
  }
  return out;
}

/** How readOutput reads. */
export interface ReadOutputOptions {
  /** Stops reading (the call ends with the signal's error). */
  signal?: AbortSignal;
  /** A download silent this long (no piece of the file) fails with DEADLINE_EXCEEDED (default
   * 45 s; 0: never): a gateway that takes the call and then sends nothing must not hold the caller
   * for ever. */
  idleTimeoutMs?: number;
}

async function sha256Hex(data: Uint8Array<ArrayBuffer>): Promise<string | undefined> {
  // WebCrypto: Node and browsers, though a browser offers it only to secure contexts (https,
  // localhost); elsewhere only the size is checked.
  const subtle = globalThis.crypto?.subtle;
  if (!subtle) {
    return undefined;
  }
  const digest = new Uint8Array(await subtle.digest("SHA-256", data));
  return Array.from(digest, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

/**
 * One of a job's outputs read over the API (GetOutput), for when its URL cannot be opened. The
 * bytes are checked against the size and SHA-256 the gateway announces first: DATA_LOSS when
 * they differ (an output replaced while it was read, a damaged object), as the Python client's
 * download does.
 */
export async function readOutput(
  client: RenderClient,
  jobId: string,
  name: string,
  options: AbortSignal | ReadOutputOptions = {},
): Promise<{ file: OutputFile | undefined; data: Uint8Array }> {
  const { signal, idleTimeoutMs = 45_000 } = options instanceof AbortSignal ? { signal: options } : options;
  const request: MessageInitShape<typeof GetOutputRequestSchema> = { jobId, name };
  const chunks: Uint8Array[] = [];
  let file: OutputFile | undefined;
  let size = 0;
  const call = new AbortController();
  const onAbort = () => call.abort(signal?.reason);
  signal?.addEventListener("abort", onAbort, { once: true });
  if (signal?.aborted) {
    onAbort();
  }
  let idle: ReturnType<typeof setTimeout> | undefined;
  const armIdle = () => {
    clearTimeout(idle);
    if (idleTimeoutMs > 0) {
      idle = setTimeout(
        () => call.abort(new ConnectError(`no message from the server for ${idleTimeoutMs} ms`, Code.DeadlineExceeded)),
        idleTimeoutMs,
      );
    }
  };
  try {
    armIdle();
    for await (const message of client.getOutput(create(GetOutputRequestSchema, request), { signal: call.signal })) {
      armIdle();
      file ??= message.file;
      chunks.push(message.data);
      size += message.data.length;
    }
  } finally {
    clearTimeout(idle);
    signal?.removeEventListener("abort", onAbort);
  }
  const data = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    data.set(chunk, offset);
    offset += chunk.length;
  }
  if (file?.sizeBytes && BigInt(size) !== file.sizeBytes) {
    throw new ConnectError(`the download has ${size} bytes, not the ${file.sizeBytes} announced`, Code.DataLoss);
  }
  if (file?.sha256) {
    const digest = await sha256Hex(data);
    if (digest !== undefined && digest !== file.sha256.toLowerCase()) {
      throw new ConnectError("the download's SHA-256 is not the one announced", Code.DataLoss);
    }
  }
  return { file, data };
}
