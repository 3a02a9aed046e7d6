"""How the ingest writer groups concurrent requests into transactions."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from omnicanal.db import Database
from omnicanal.timeline.writer import IngestWriter

# Generous on purpose: what is tested is which requests share a transaction, not how fast it goes.
GAP, MOST = 2.0, 6.0


class Recorder:
    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.hold = threading.Event()

    def __call__(self, session: Session, items: Sequence[Any]) -> list[Any]:
        if "held" in items:
            self.hold.wait(timeout=10)
        self.batches.append(list(items))
        return [f"stored {item}" for item in items]


def test_a_burst_shares_one_transaction_and_a_lone_request_does_not_wait(db: Database) -> None:
    record = Recorder()
    writer = IngestWriter(db, linger_gap=GAP, linger_max=MOST)

    async def scenario() -> None:
        started = time.monotonic()
        assert await writer.run(record, ["alone"]) == ["stored alone"]
        assert time.monotonic() - started < GAP / 2  # nothing else in flight: stored at once

        # two requests queue up while the writer is busy: the next batch takes both
        held = asyncio.ensure_future(writer.run(record, ["held"]))
        await asyncio.sleep(0.05)
        queued = [asyncio.ensure_future(writer.run(record, [name])) for name in ("x", "y")]
        await asyncio.sleep(0.05)
        record.hold.set()
        await asyncio.gather(held, *queued)

        # requests now come together: the writer waits for the rest of a burst arriving a little apart, and
        # begins as soon as it is as large as the last one
        started = time.monotonic()
        burst = []
        for name in ("b1", "b2"):
            burst.append(asyncio.ensure_future(writer.run(record, [name])))
            await asyncio.sleep(0.05)
        assert [await answer for answer in burst] == [["stored b1"], ["stored b2"]]
        assert time.monotonic() - started < GAP / 2

        # a smaller burst is stored once no request has come for the gap
        assert await writer.run(record, ["c1"]) == ["stored c1"]

    writer.start()
    try:
        asyncio.run(scenario())
    finally:
        writer.stop()
    assert record.batches == [["alone"], ["held"], ["x", "y"], ["b1", "b2"], ["c1"]]
