"""A drain (the first Ctrl-C) gives up the waits for quota admission.

Draining lets the requests in flight finish; a request still waiting for room under a
quota has not been sent, so it is not in flight.  Before, it kept waiting: with
``rpm = 2`` and sixteen workers, one Ctrl-C took about ten minutes to end the command.
Now the item ends ``cancelled`` (not final: the next run takes it again), nothing is sent
for it, and the run ends as soon as the requests on the wire are answered.
"""

from __future__ import annotations

import asyncio
from typing import Any

import stagedretry as sr


class Gate:
    """A strategy whose admission lets one request through, then has no room ever again."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.settled: list[tuple[str, sr.Usage | None]] = []
        self.waiting = 0
        self.three_wait = asyncio.Event()
        self.room = asyncio.Semaphore(1)

    async def admit(self, request: sr.Request, ctx: sr.StageContext) -> Any:
        self.waiting += 1
        if self.waiting >= 3:
            self.three_wait.set()
        try:
            await self.room.acquire()  # one request, then no room ever again
        finally:
            self.waiting -= 1

        def settle(usage: sr.Usage | None) -> None:
            self.settled.append((request.item_id, usage))

        return settle

    async def generate(self, request: sr.Request, ctx: sr.StageContext) -> sr.Response:
        self.sent.append(request.item_id)
        return sr.Response('{"ok": true}', sr.Usage(input_tokens=3))

    def classify(self, exc: BaseException) -> sr.Outcome | None:
        return None


async def test_a_drain_gives_up_the_admission_waits_and_sends_nothing_more() -> None:
    strategy = Gate()
    runner = sr.Runner(sr.Plan.ladder(), strategy, concurrency=4)
    run = asyncio.ensure_future(runner.run([(str(n), "x") for n in range(10)]))
    await asyncio.wait_for(strategy.three_wait.wait(), 5.0)
    runner.drain()
    batch = await asyncio.wait_for(run, 5.0)  # before: waited for room that never came
    by_id = {r.id: r for r in batch.results}
    assert strategy.sent == ["0"]
    assert by_id["0"].ok
    waited = [r for r in batch.results if r.id != "0"]
    assert len(waited) >= 3
    for result in waited:
        assert result.status is sr.ItemStatus.CANCELLED
        assert result.attempts == ()  # nothing sent, no prompt spent
        assert result.reason is not None
        assert "None" not in result.reason
    assert len(batch.results) <= 5  # the four workers' items: no new one after the drain
    assert strategy.settled == [("0", sr.Usage(input_tokens=3))]
