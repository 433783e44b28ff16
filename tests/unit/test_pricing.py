"""What jobs cost: reservations at submit, charges at the end, never more than reserved."""

from __future__ import annotations

import pytest

from gateway.pricing import Price, PriceTable, charge_for, charge_for_cancelled_batch, charge_for_failure, price_of
from render.v1 import render_service_pb2 as pb
from render_client.client import room_batch_request, room_render, room_render_request

PRICES = PriceTable()


def swap(variants: int = 0, refine: bool = False) -> pb.SubmitRenderRequest:
    options = pb.MaterialSwapOptions(enable_refinement=refine)
    request = pb.SubmitRenderRequest(material_swap=pb.MaterialSwap(options=options))
    request.material_swap.variant_swatches.extend(pb.ImageSource(url="https://x/y.jpg") for _ in range(variants))
    return request


def test_reservations_cover_the_most_a_job_can_cost() -> None:
    assert price_of(swap(), PRICES, 100) == Price(10, 0)
    assert price_of(swap(variants=2), PRICES, 100) == Price(20, 0)
    assert price_of(swap(refine=True), PRICES, 100) == Price(10, 100)  # the provider budget, once per job
    assert price_of(room_render_request(room_render("hall", dry_run=True)), PRICES, 100) == Price(2, 0)
    capped = room_render("hall", max_cents=12.5)
    assert price_of(room_render_request(capped), PRICES, 100) == Price(2, 13)  # a part of a cent costs a credit
    batch = room_batch_request([room_render("a"), room_render("b", dry_run=True)])
    assert price_of(batch, PRICES, 40) == Price(4, 40)


def test_charges_never_exceed_the_reservation() -> None:
    price = Price(2, 13)
    assert charge_for(pb.JobResult(), price, 4.2, PRICES) == 7
    assert charge_for(pb.JobResult(), price, 99.0, PRICES) == 15  # capped at what was reserved
    batch = pb.JobResult(batch=pb.BatchReport(total=4, succeeded=3, cost=pb.Cost(cents=3.0)))
    assert charge_for(batch, Price(8, 40), 0.0, PRICES) == 6 + 3  # the rooms that rendered, and their spend
    # A room refused by the caller's fault keeps its base beside rooms that rendered, as it does alone
    # and in a batch none of whose rooms rendered (it was free beside a rendered room: a review).
    refused = pb.ChildJob(state=pb.JOB_STATE_FAILED, error=pb.JobError(code=pb.ERROR_CODE_CONTENT_POLICY))
    failed = pb.ChildJob(state=pb.JOB_STATE_FAILED, error=pb.JobError(code=pb.ERROR_CODE_PROVIDER_UNAVAILABLE))
    mixed = pb.JobResult(batch=pb.BatchReport(total=4, succeeded=2, failed=2, children=[refused, failed]))
    assert charge_for(mixed, Price(8, 40), 0.0, PRICES) == 6  # two rendered and the refused one; not the provider's
    assert charge_for_failure(pb.ERROR_CODE_PIPELINE_ERROR, price, 4.0, PRICES) == 0  # not the caller's fault
    assert charge_for_failure(pb.ERROR_CODE_CONTENT_POLICY, price, 0.5, PRICES) == 3


def test_a_price_table_is_read_over_the_defaults() -> None:
    table = PriceTable.load('{"material_swap": 25, "credits_per_cent": 2}')
    assert (table.material_swap, table.room_render, table.credits(1.5)) == (25, 2, 3)
    with pytest.raises(ValueError, match="unknown prices"):
        PriceTable.load('{"free_lunch": 1}')


def test_a_cancelled_batch_pays_for_the_rooms_that_rendered() -> None:
    rendered = [
        pb.Job(
            state=pb.JOB_STATE_SUCCEEDED, result=pb.JobResult(generation=pb.GenerationReport(cost=pb.Cost(cents=2.0)))
        ),
        pb.Job(state=pb.JOB_STATE_CANCELLED),
        pb.Job(state=pb.JOB_STATE_RUNNING),
    ]
    # 4 rooms at 2 each: one rendered (2) and its provider's 2 cents; nothing for the others.
    assert charge_for_cancelled_batch(4, rendered, Price(8, 40), PRICES) == 2 + PRICES.credits(2.0)
    assert charge_for_cancelled_batch(4, [], Price(8, 40), PRICES) == 0


@pytest.mark.parametrize(
    "source",
    [
        '{"room_render": 2.5}',  # the ledger counts whole credits: every priced submit failed
        '{"material_swap": -10}',  # a job would reserve less than its base
        '{"variant": true}',
        '{"texture_edit": "2"}',
        '{"credits_per_cent": -1}',
        '{"credits_per_cent": 1e999}',
        "[1, 2]",
    ],
)
def test_a_price_table_with_a_price_the_ledger_cannot_take_is_refused_at_start(source: str) -> None:
    with pytest.raises(ValueError, match="CREDIT_PRICES"):
        PriceTable.load(source)


def test_a_fractional_rate_of_credits_a_cent_is_a_price_table_may_hold() -> None:
    assert PriceTable.load('{"credits_per_cent": 0.5, "room_render": 0}').credits(3) == 2


def test_a_cancelled_batch_keeps_the_base_of_a_room_refused_by_the_callers_fault() -> None:
    """As its end would (charge_for): cancelling a batch once a room was refused, before the batch
    ended, made the refused room free."""
    done = pb.Job(state=pb.JOB_STATE_SUCCEEDED)
    refused = pb.Job(state=pb.JOB_STATE_FAILED, error=pb.JobError(code=pb.ERROR_CODE_CONTENT_POLICY))
    failed = pb.Job(state=pb.JOB_STATE_FAILED, error=pb.JobError(code=pb.ERROR_CODE_PROVIDER_UNAVAILABLE))
    running = pb.Job(state=pb.JOB_STATE_RUNNING)
    assert charge_for_cancelled_batch(4, [done, refused, failed, running], Price(8, 40), PRICES) == 4
