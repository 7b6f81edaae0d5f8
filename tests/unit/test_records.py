"""The local target's promotion lock under contention, without servers: real processes, a real
kernel flock. The race is forced, not timed: every contender is released by one barrier at the
same moment and keeps trying until all have tried, while a stale holder file from a crashed
manager lies there."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
from pathlib import Path

from shipyard.config import Environment

CONTENDERS = 6


def _contend(state: str, who: str, start, tried, results) -> None:
    os.environ["SHIPYARD_STATE"] = state
    from shipyard.targets import LocalTarget

    target = LocalTarget(Environment(name="prod"))
    start.wait()
    results[who] = target.lock.acquire("promotion", who, 60)
    tried.wait()  # the winner keeps the lock until every contender has tried
    if results[who] is None:
        target.lock.release("promotion", who)


def test_exactly_one_of_many_simultaneous_managers_holds_the_lock(tmp_path: Path):
    locks = tmp_path / "locks"
    locks.mkdir()
    # What a manager killed mid-promotion leaves: a holder file, no process behind it.
    (locks / "prod-promotion.lock").write_text(json.dumps({"holder": "crashed@desk:1", "since": 0}))
    ctx = multiprocessing.get_context("fork")
    start, tried = ctx.Barrier(CONTENDERS), ctx.Barrier(CONTENDERS)
    with ctx.Manager() as manager:
        results = manager.dict()
        procs = [ctx.Process(target=_contend, args=(str(tmp_path), f"m{i}", start, tried, results))
                 for i in range(CONTENDERS)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)  # catches a hang only
        outcome = dict(results)
    winners = [who for who, held_by in outcome.items() if held_by is None]
    assert len(outcome) == CONTENDERS and len(winners) == 1, outcome


def test_a_holder_that_dies_releases_the_lock(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("SHIPYARD_STATE", str(tmp_path))
    from shipyard.targets import LocalTarget

    ctx = multiprocessing.get_context("fork")
    holding, hold_forever = ctx.Event(), ctx.Event()

    def holder() -> None:
        LocalTarget(Environment(name="prod")).lock.acquire("promotion", "doomed@desk:2", 60)
        holding.set()
        hold_forever.wait(60)

    proc = ctx.Process(target=holder)
    proc.start()
    assert holding.wait(30)
    mine = LocalTarget(Environment(name="prod"))
    assert mine.lock.acquire("promotion", "me", 60) == "doomed@desk:2"
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(30)
    assert mine.lock.acquire("promotion", "me", 60) is None  # no expiry to wait for
    mine.lock.release("promotion", "me")
