"""A Celery app with one task that does nothing: the latency baseline of the submit benchmark.

The broker and the result backend are the stack's Redis, so a task's submit-to-result time is what
a conventional task queue needs on the same Redis and machine for a job that does no work.

    BENCH_REDIS_URL=redis://:PASSWORD@127.0.0.1:6390/1 python -m benchmarks.celery_noop --concurrency 2

runs a worker (prefork pool) until SIGTERM; benchmarks.submit starts it and calls `noop` through
create_app. Celery is the `bench` extra (`pip install -e '.[bench]'`; `make bench` installs it).
"""

from __future__ import annotations

import argparse
import os

# Celery ships no type hints; without the bench extra it is not installed at all.
from celery import Celery

NOOP_TASK = "benchmarks.noop"
# The URL carries Redis's password, so it comes in the environment: a command line is readable by
# every user of the machine.
REDIS_URL_ENV = "BENCH_REDIS_URL"


def create_app(redis_url: str) -> Celery:
    """The app, its broker and result backend on redis_url, with the no-op task registered."""
    app = Celery("render-bench", broker=redis_url, backend=redis_url)
    app.conf.update(
        broker_connection_retry_on_startup=True,
        # One task at a time per worker process, as the gateway's dispatcher takes one job per slot.
        worker_prefetch_multiplier=1,
        result_expires=600,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
    )

    @app.task(name=NOOP_TASK)  # type: ignore[untyped-decorator,misc,unused-ignore]
    def noop() -> None:
        return None

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes (prefork)")
    args = parser.parse_args()
    redis_url = os.environ.get(REDIS_URL_ENV, "")
    if not redis_url:
        raise SystemExit(
            f"{REDIS_URL_ENV} is not set: the broker and result backend's URL (redis:// or redis+socket://)"
        )
    app = create_app(redis_url)
    # Celery's own signal handling: SIGTERM is a warm shutdown (running tasks finish, then exit).
    worker = ["worker", "--pool", "prefork", f"--concurrency={args.concurrency}", "--loglevel=WARNING"]
    # Gossip, mingle and heartbeats are for clusters of workers; one alone only pays for them.
    app.worker_main([*worker, "--without-gossip", "--without-mingle", "--without-heartbeat"])


if __name__ == "__main__":
    main()
