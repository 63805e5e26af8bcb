"""The machinery the dealer and detox share at run time, where it needs no service: sending a
batch apart until the refused items are isolated, the schedule's decision, sending pending
commands in order, and the cycles running in the background."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import pytest

from dynamo_common.agent_runtime import (
    CycleBusy,
    CycleTasks,
    Scheduled,
    bisect,
    due,
    failure_text,
    send_in_order,
    start_due,
    utc,
)
from dynamo_common.bus.base import RequestTimeout

log = logging.getLogger("tests.agent_runtime")


def _ids(key: str) -> str:
    return f"id:{key}"


class Receiver:
    """Refuses every command that holds one of ``bad``; remembers what it was sent."""

    def __init__(self, bad: set[int]) -> None:
        self.bad = bad
        self.sent: list[tuple[list[int], str]] = []

    async def __call__(self, chunk: list[int], cid: str) -> str | None:
        self.sent.append((list(chunk), cid))
        refused = sorted(self.bad.intersection(chunk))
        return f"refused {refused}" if refused else None


# ------------------------------------------------------------------------------ bisect


async def test_a_batch_nobody_refuses_goes_as_one_command() -> None:
    receiver = Receiver(bad=set())
    sent, refused = await bisect([1, 2, 3, 4], "c1", receiver, _ids)
    assert (sent, refused) == ([1, 2, 3, 4], [])
    assert receiver.sent == [([1, 2, 3, 4], "id:c1")]


async def test_an_empty_batch_sends_no_command() -> None:
    receiver = Receiver(bad=set())
    assert await bisect([], "c1", receiver, _ids) == ([], [])
    assert receiver.sent == []


async def test_refused_items_are_isolated_and_the_others_still_go() -> None:
    receiver = Receiver(bad={3, 6})
    sent, refused = await bisect([1, 2, 3, 4, 5, 6, 7, 8], "c1", receiver, _ids)
    assert sent == [1, 2, 4, 5, 7, 8]
    assert refused == [(3, "refused [3]"), (6, "refused [6]")]
    # The halves that hold no refused item are accepted whole, not item by item.
    assert ([1, 2], "id:c1/0/0") in receiver.sent
    assert ([7, 8], "id:c1/1/1") in receiver.sent


async def test_a_round_sent_again_asks_under_the_same_ids() -> None:
    first, again = Receiver(bad={2, 5}), Receiver(bad={2, 5})
    await bisect([1, 2, 3, 4, 5], "cycle/7", first, _ids)
    await bisect([1, 2, 3, 4, 5], "cycle/7", again, _ids)
    assert first.sent == again.sent
    ids = [cid for _, cid in first.sent]
    assert len(ids) == len(set(ids)), "every command of a round has its own id"


async def test_a_single_refused_item_carries_the_reason() -> None:
    sent, refused = await bisect([9], "k", Receiver(bad={9}), _ids)
    assert (sent, refused) == ([], [(9, "refused [9]")])


# ------------------------------------------------------------------------- schedule


def test_a_cycle_never_queued_is_due() -> None:
    assert due(None, now=0.0, interval=3600.0)


def test_a_cycle_is_due_once_the_interval_has_passed_and_not_before() -> None:
    last = datetime(2026, 1, 1, tzinfo=UTC)
    at = last.timestamp()
    assert not due(last, now=at + 3599.0, interval=3600.0)
    assert due(last, now=at + 3600.0, interval=3600.0)
    assert due(last, now=at + 9000.0, interval=3600.0)


class Kind:
    """A kind of cycle for the schedule: last queued at ``last``, queue fails as told."""

    def __init__(self, last: datetime | None, fails: Exception | None = None) -> None:
        self.last = last
        self.fails = fails
        self.started = 0

    async def when(self) -> datetime | None:
        return self.last

    async def start(self) -> int:
        if self.fails is not None:
            raise self.fails
        self.started += 1
        return self.started

    def scheduled(self, name: str) -> Scheduled:
        return Scheduled(name, self.when, self.start)


async def test_the_schedule_starts_the_due_cycles_only() -> None:
    now = datetime(2026, 1, 1, 12, tzinfo=UTC).timestamp()
    never, recent, old = Kind(None), Kind(utc(now - 10)), Kind(utc(now - 7200))
    cycles = [never.scheduled("a"), recent.scheduled("b"), old.scheduled("c")]
    await start_due(cycles, 3600.0, lambda: now, log)
    assert (never.started, recent.started, old.started) == (1, 0, 1)


async def test_a_busy_or_failing_cycle_does_not_keep_the_others_from_starting(
    caplog: pytest.LogCaptureFixture,
) -> None:
    busy = Kind(None, fails=CycleBusy("already queued"))
    broken = Kind(None, fails=RuntimeError("database gone"))
    fine = Kind(None)
    cycles = [busy.scheduled("busy"), broken.scheduled("a cycle of Physics"), fine.scheduled("ok")]
    with caplog.at_level(logging.ERROR, logger=log.name):
        await start_due(cycles, 60.0, lambda: 0.0, log)
    assert fine.started == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    # A busy cycle is normal (the last one still runs); a failure is logged by name.
    assert errors == ["scheduling a cycle of Physics failed"]


# -------------------------------------------------------------------- pending commands


async def test_pending_commands_go_in_order_until_one_is_not_answered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sent: list[str] = []

    async def send(command: tuple[int, str]) -> str:
        sent.append(command[1])
        if command[1] == "late":
            raise RequestTimeout("no reply in 60 s")
        return f"answered {command[1]}"

    commands = [(1, "first"), (1, "second"), (2, "late"), (3, "after")]
    with caplog.at_level(logging.WARNING, logger=log.name):
        answers = await send_in_order(commands, send, lambda c: c[0], log)
    assert answers == ["answered first", "answered second"]
    # What follows an unanswered command waits for the next round, in its order.
    assert sent == ["first", "second", "late"]
    assert [r.getMessage() for r in caplog.records] == [
        "commands of cycle 2 not answered yet: no reply in 60 s"
    ]


async def test_an_error_other_than_no_answer_is_not_swallowed() -> None:
    async def send(command: int) -> int:
        raise ValueError("bad command")

    with pytest.raises(ValueError, match="bad command"):
        await send_in_order([1], send, lambda c: c, log)


def test_a_failure_is_recorded_with_its_type() -> None:
    assert failure_text(KeyError("site")) == "KeyError: 'site'"


# ------------------------------------------------------------------ background cycles


async def test_the_cycles_are_idle_until_one_is_queued_and_after_all_have_ended() -> None:
    cycles = CycleTasks()
    assert cycles.idle.is_set()
    release = asyncio.Event()
    ended: list[str] = []

    async def cycle(name: str) -> None:
        await release.wait()
        ended.append(name)

    cycles.spawn(cycle("one"), "agent-cycle-1")
    cycles.spawn(cycle("two"), "agent-cycle-2")
    assert not cycles.idle.is_set()
    waiting = asyncio.create_task(cycles.wait_idle())
    await asyncio.sleep(0.05)
    assert not waiting.done(), "idle while cycles still run"
    release.set()
    await asyncio.wait_for(waiting, timeout=30)
    assert sorted(ended) == ["one", "two"]
    assert cycles.idle.is_set() and not cycles.tasks


async def test_a_failed_cycle_still_leaves_the_runtime_idle() -> None:
    cycles = CycleTasks()

    async def broken() -> None:
        raise RuntimeError("boom")

    cycles.spawn(broken(), "agent-cycle-1")
    await asyncio.wait_for(cycles.wait_idle(), timeout=30)
    assert cycles.idle.is_set()


async def test_stop_cancels_the_cycles_still_running() -> None:
    cycles = CycleTasks()
    forever = asyncio.Event()

    async def cycle() -> None:
        await forever.wait()

    cycles.spawn(cycle(), "agent-cycle-1")
    running = list(cycles.tasks)
    await asyncio.wait_for(cycles.stop(), timeout=30)
    assert all(task.cancelled() for task in running)
    await asyncio.wait_for(cycles.wait_idle(), timeout=30)
