/** The caller's jobs, newest first, a page at a time (ListJobs). */

import { useCallback, useEffect, useState } from "react";

import { timestampDate, type Job, type RenderClient } from "@render-pipeline/client";
import { describe } from "../errors";
import { href } from "../routes";
import { Alert, Button, ProgressBar, StateBadge } from "./ui";

const PAGE_SIZE = 10;

export function JobList({ client }: { client: RenderClient }) {
  const [jobs, setJobs] = useState<Job[]>([]);
  const [next, setNext] = useState("");
  const [loading, setLoading] = useState(false);
  const [loaded, setLoaded] = useState(false);
  const [error, setError] = useState("");

  const load = useCallback(
    async (token: string) => {
      setLoading(true);
      setError("");
      try {
        const page = await client.listJobs({ pageSize: PAGE_SIZE, pageToken: token });
        setJobs((list) => (token ? [...list, ...page.jobs] : page.jobs));
        setNext(page.nextPageToken);
        setLoaded(true);
      } catch (e) {
        setError(describe(e));
      } finally {
        setLoading(false);
      }
    },
    [client],
  );

  useEffect(() => {
    void load("");
  }, [load]);

  return (
    <section className="card stack">
      <div className="job-header">
        <h2>Jobs</h2>
        <Button variant="ghost" onClick={() => void load("")} loading={loading && !jobs.length}>
          Refresh
        </Button>
      </div>
      {error && <Alert>{error}</Alert>}
      {loaded && jobs.length === 0 && <p className="placeholder">No jobs yet: render something first.</p>}
      <ul className="job-list" data-testid="job-list">
        {jobs.map((job) => (
          <li key={job.id}>
            <a href={href({ name: "job", id: job.id })} data-job-id={job.id}>
              <span className="job-kind">{job.kind.replace(/_/g, " ")}</span>
              <StateBadge state={job.state} />
              <span className="muted job-time">{job.createTime ? timestampDate(job.createTime).toLocaleString() : ""}</span>
              <span className="job-message">{job.error?.message || job.message}</span>
              <ProgressBar value={job.progress} label={`Progress of ${job.id}`} />
            </a>
          </li>
        ))}
      </ul>
      {next && (
        <Button onClick={() => void load(next)} loading={loading} data-testid="load-more">
          Load more
        </Button>
      )}
    </section>
  );
}
