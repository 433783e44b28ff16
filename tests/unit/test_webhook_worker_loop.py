"""The webhook worker's claim loop with every slot busy (gateway.webhooks.worker.DeliveryWorker).

An attempt's end woke the loop before its task had left the slots; the loop found none free, kept
the wake set, and waited on a set event, which returns without yielding: the gateway's event loop
froze and its timer heap grew until the kernel killed it (a soak review; 23 GB). The worker runs in
a child process with its memory and time bounded, so that the failure cannot take the suite down."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import asyncio, resource, time
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
    from gateway.ledger.webhooks import Attempt, Claimed, Delivery
    from gateway.settings import WebhookSettings
    from gateway.webhooks.worker import DeliveryWorker
    from renderkit.fetch import FetchPolicy

    class Ledger:  # always more deliveries due than slots: a busy stack
        claimed = 0
        def with_retry(self, _budget): return self
        async def claim_deliveries(self, claim, lease, most, per_tenant):
            out = Claimed()
            for _ in range(most):
                Ledger.claimed += 1
                delivery = Delivery(f"msg_{Ledger.claimed}", "t", "job", "", "http://x", "job.completed", b"")
                out.deliveries.append(delivery)
            return out
        async def record_attempt(self, *args, **kwargs): return True

    class Subscriptions:
        def on(self, *args): pass
        def on_subscribed(self, *args): pass

    async def main():
        worker = DeliveryWorker(Ledger(), WebhookSettings(concurrency=2), FetchPolicy(), None, Subscriptions())
        async def attempt(delivery):
            await asyncio.sleep(0.02)
            return Attempt(0, "success", 200, 1), None
        worker._attempt = attempt
        ticks = 0
        await worker.start()
        for _ in range(20):  # 1 s of the loop's own timers, which a frozen loop never fires
            await asyncio.sleep(0.05)
            ticks += 1
        await worker.stop(0.5)
        print(ticks, Ledger.claimed, flush=True)

    asyncio.run(main())
    """
)


def test_the_claim_loop_yields_and_goes_on_claiming_with_every_slot_busy() -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHILD], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    ticks, claimed = (int(word) for word in done.stdout.split())
    assert ticks == 20
    assert claimed > 20  # two slots of 20 ms attempts for a second: dozens claimed in turn
