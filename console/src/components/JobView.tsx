/** One job: live progress step by step (WatchJob, resumed after a dropped connection), then its result. */

import { useEffect, useMemo, useRef, useState } from "react";

import {
  ErrorCode,
  isTerminal,
  JobState,
  readOutput,
  Stage,
  timestampDate,
  watchJob,
  type Job,
  type JobEvent,
  type OutputFile,
  type RenderClient,
} from "@render-pipeline/client";
import { describe } from "../errors";
import { inputsOf } from "../images";
import { CompareSlider } from "./CompareSlider";
import { Alert, Button, formatBytes, ProgressBar, StateBadge, stateName } from "./ui";

type Connection = "connecting" | "live" | "reconnecting" | "ended";

const STAGES: Record<Stage, string> = {
  [Stage.UNSPECIFIED]: "",
  [Stage.SEGMENTATION]: "Finding the surface",
  [Stage.DEPTH]: "Estimating the geometry",
  [Stage.PROJECTION]: "Laying the material",
  [Stage.GENERATION]: "Generating",
  [Stage.OUTPUT]: "Writing the outputs",
};

interface StepGroup {
  step: number;
  total: number;
  stage: Stage;
  events: JobEvent[];
}

/** Events grouped by step, in order of first appearance (events before the first step: step 0). */
function groupSteps(events: JobEvent[]): StepGroup[] {
  const groups: StepGroup[] = [];
  for (const event of events) {
    const last = groups[groups.length - 1];
    const step = isTerminal(event.state) && last ? last.step : event.step;
    if (last && last.step === step) {
      last.events.push(event);
      if (event.stage) last.stage = event.stage;
    } else {
      groups.push({ step, total: event.totalSteps, stage: event.stage, events: [event] });
    }
  }
  return groups;
}

function stepTitle(group: StepGroup): string {
  return group.step > 0 ? `Step ${group.step} of ${group.total}${STAGES[group.stage] ? ` · ${STAGES[group.stage]}` : ""}` : "Accepted";
}

/** What a screen reader is told as the job moves: each step as it starts, then how the job ended. */
function announcement(steps: StepGroup[], state: JobState, ended: boolean): string {
  if (ended) return `The job ${stateName(state)}.`;
  const last = steps[steps.length - 1];
  return last ? stepTitle(last) : "";
}

function errorName(code: ErrorCode): string {
  return (ErrorCode[code] ?? "UNKNOWN").toLowerCase().replace(/_/g, " ");
}

async function downloadViaApi(client: RenderClient, jobId: string, output: OutputFile): Promise<void> {
  const { data } = await readOutput(client, jobId, output.name);
  const url = URL.createObjectURL(new Blob([data as BlobPart], { type: output.contentType }));
  const a = document.createElement("a");
  a.href = url;
  a.download = fileName(jobId, output);
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/** A swatch's name as a caption: without its file extension. */
function caption(name: string | undefined): string {
  return (name ?? "").replace(/\.(jpe?g|png|webp)$/i, "");
}

function fileName(jobId: string, output: OutputFile): string {
  const ext = output.contentType.split("/")[1]?.replace("jpeg", "jpg") ?? "bin";
  return `${jobId}-${output.name}.${ext}`;
}

export function JobView({ client, jobId }: { client: RenderClient; jobId: string }) {
  const [job, setJob] = useState<Job | null>(null);
  const [events, setEvents] = useState<JobEvent[]>([]);
  const [connection, setConnection] = useState<Connection>("connecting");
  const [reconnects, setReconnects] = useState(0);
  const [error, setError] = useState("");
  const [cancelling, setCancelling] = useState(false);
  const [apiError, setApiError] = useState("");
  const heading = useRef<HTMLHeadingElement>(null);

  // Opened from a form that is gone now (a submit) the focus is on the page's body: it goes to the
  // job's heading, so the keyboard and a screen reader go on from here, not from the top.
  useEffect(() => {
    if (!document.activeElement || document.activeElement === document.body) heading.current?.focus({ preventScroll: true });
  }, []);

  useEffect(() => {
    const abort = new AbortController();
    const { signal } = abort;
    setJob(null);
    setEvents([]);
    setConnection("connecting");
    setReconnects(0);
    setError("");
    void (async () => {
      try {
        const first = await client.getJob({ jobId }, { signal });
        setJob(first.job ?? null);
        for await (const event of watchJob(client, jobId, {
          signal,
          onConnected: () => setConnection("live"),
          onReconnect: () => {
            setConnection("reconnecting");
            setReconnects((n) => n + 1);
          },
        })) {
          setEvents((list) => [...list, event]);
          setJob((j) => (j ? { ...j, state: event.state, progress: event.progress, message: event.message } : j));
        }
        // A fresh read: output links are signed anew each time a job is read.
        const last = await client.getJob({ jobId }, { signal });
        setJob(last.job ?? null);
        setConnection("ended");
      } catch (e) {
        if (!signal.aborted) {
          setError(describe(e));
          setConnection("ended");
        }
      }
    })();
    return () => abort.abort();
  }, [client, jobId]);

  const steps = useMemo(() => groupSteps(events), [events]);
  const latest = events[events.length - 1];
  const state = latest?.state ?? job?.state ?? JobState.UNSPECIFIED;
  const ended = isTerminal(state);
  const progress = state === JobState.SUCCEEDED ? 1 : (latest?.progress ?? job?.progress ?? 0);
  const inputs = inputsOf(jobId);

  const cancel = async () => {
    setCancelling(true);
    try {
      await client.cancelJob({ jobId });
    } catch (e) {
      setError(describe(e));
    } finally {
      setCancelling(false);
    }
  };

  const outputs = job?.state === JobState.SUCCEEDED ? (job.result?.outputs ?? []) : [];
  const full = outputs.find((o) => o.name === "full");
  const variants = outputs.filter((o) => /^v\d+-full$/.test(o.name));
  const generation = job?.result?.generation;

  return (
    <div className="job-view layout-job" data-job-id={jobId} data-state={connection === "ended" ? "ended" : "watching"}>
      <aside className="job-side stack">
        <section className="card stack">
          <div className="job-header">
            <div>
              <h2 ref={heading} tabIndex={-1}>
                {job?.kind ? job.kind.replace(/_/g, " ") : "Job"} <StateBadge state={state} />
              </h2>
              <p className="muted mono">{jobId}</p>
            </div>
            {!ended && job && (
              <Button variant="danger" onClick={cancel} loading={cancelling}>
                Cancel
              </Button>
            )}
          </div>
          <ProgressBar value={progress} label="Overall progress" />
          <p className="connection" data-connection={connection} data-reconnects={reconnects} aria-live="polite">
            {connection === "connecting" && "Connecting…"}
            {connection === "live" && (
              <>
                <span className="dot live" /> Live{reconnects > 0 && ` · resumed after ${reconnects} dropped connection${reconnects > 1 ? "s" : ""}`}
              </>
            )}
            {connection === "reconnecting" && (
              <>
                <span className="dot warn" /> Reconnecting…
              </>
            )}
            {connection === "ended" && ended && (
              <>
                {latest?.time ? `Ended ${timestampDate(latest.time).toLocaleTimeString()}` : "Ended"}
                {reconnects > 0 && ` · resumed after ${reconnects} dropped connection${reconnects > 1 ? "s" : ""}`}
              </>
            )}
          </p>
          <p className="visually-hidden" role="status" data-testid="job-announcer">
            {job ? announcement(steps, state, ended) : ""}
          </p>
          {error && <Alert>{error}</Alert>}
          <ol className="steps" data-testid="steps">
            {steps.map((group, index) => {
              const isLast = index === steps.length - 1;
              const status =
                !isLast || state === JobState.SUCCEEDED ? "done" : state === JobState.FAILED || state === JobState.CANCELLED ? "failed" : "active";
              const title = stepTitle(group);
              return (
                <li key={`${group.step}-${index}`} className={`step ${status}`} data-step={group.step}>
                  <span className="step-icon" aria-hidden="true" />
                  <div>
                    <p className="step-title">{title}</p>
                    <ul className="step-messages">
                      {group.events.map((event) => (
                        <li key={event.cursor} data-cursor={event.cursor}>
                          {event.message}
                        </li>
                      ))}
                    </ul>
                  </div>
                </li>
              );
            })}
          </ol>
          {job?.state === JobState.FAILED && job.error && (
            <Alert>
              <strong>The render failed ({errorName(job.error.code)}).</strong> {job.error.message}
            </Alert>
          )}
        </section>
      </aside>
      <div className="job-main stack">
        {!full && !generation && (
          <section className="card placeholder-card">
            {!ended ? (
              <p className="placeholder">
                <span className="spinner" aria-hidden="true" /> The result appears here when the render ends.
              </p>
            ) : (
              <p className="placeholder">{state === JobState.SUCCEEDED ? "This job wrote no image." : "No result: the job did not succeed."}</p>
            )}
          </section>
        )}
        {full && (
          <section className="card stack" data-testid="result">
            <h2>Result</h2>
            {inputs?.photo ? (
              <CompareSlider before={inputs.photo.url} after={full.url} width={full.width} height={full.height} />
            ) : (
              <img className="result-image" src={full.url} alt="The render" data-testid="after-image" />
            )}
            {variants.length > 0 && (
              <>
                <h3>Variants</h3>
                <div className="variants" data-testid="variants">
                  <figure>
                    <img src={outputs.find((o) => o.name === "preview")?.url ?? full.url} alt="Material" loading="lazy" />
                    <figcaption>{caption(inputs?.swatches[0]) || "Material"}</figcaption>
                  </figure>
                  {variants.map((v) => {
                    const n = Number(/^v(\d+)/.exec(v.name)?.[1] ?? 0);
                    const preview = outputs.find((o) => o.name === `v${n}-preview`) ?? v;
                    return (
                      <figure key={v.name}>
                        <img src={preview.url} alt={`Variant ${n}`} loading="lazy" />
                        <figcaption>{caption(inputs?.swatches[n]) || `Variant ${n}`}</figcaption>
                      </figure>
                    );
                  })}
                </div>
              </>
            )}
            {job?.result?.geometrySource && (
              <p className="muted">
                Plane from {job.result.geometrySource.replace(/_/g, " ")} (confidence {job.result.geometryConfidence.toFixed(2)}), scale from{" "}
                {job.result.scaleSource.replace(/_/g, " ")}: {job.result.repeatsU.toFixed(1)} × {job.result.repeatsV.toFixed(1)} repeats
                {job.result.geometryReused && " · geometry reused"}
              </p>
            )}
          </section>
        )}

        {generation && (
          <section className="card stack" data-testid="generation">
            <h2>{generation.dryRun ? "Dry run" : "Generation"}</h2>
            <p className="prompt">{generation.prompt}</p>
            <p className="muted">
              {generation.dryRun ? "Estimated" : "Cost"}: {(generation.dryRun ? generation.estimatedCost : generation.cost)?.cents.toFixed(2) ?? "0"} ¢
              {generation.provider && ` · ${generation.provider} ${generation.model}`}
            </p>
          </section>
        )}

        {outputs.length > 0 && (
          <section className="card stack" data-testid="downloads">
            <h2>Downloads</h2>
            <p className="muted">
              Links are signed and expire
              {outputs[0]?.urlExpireTime ? ` at ${timestampDate(outputs[0].urlExpireTime).toLocaleTimeString()}` : ""}; opening
              this job again makes new ones.
            </p>
            <ul className="downloads">
              {outputs.map((o) => (
                <li key={o.name} data-output={o.name}>
                  <span className="download-name">{o.name}</span>
                  <span className="muted">
                    {o.width}×{o.height} · {formatBytes(o.sizeBytes)}
                  </span>
                  <span className="download-actions">
                    {o.url && (
                      <a className="btn btn-secondary" href={o.url} download={fileName(jobId, o)} data-testid="download-link">
                        Download
                      </a>
                    )}
                    <Button
                      variant="ghost"
                      onClick={() => {
                        setApiError("");
                        downloadViaApi(client, jobId, o).catch((e: unknown) => setApiError(describe(e)));
                      }}
                    >
                      Via API
                    </Button>
                  </span>
                </li>
              ))}
            </ul>
            {apiError && <Alert>{apiError}</Alert>}
          </section>
        )}
      </div>
    </div>
  );
}
