"""A follower's copy of the inventory: a snapshot plus the sequenced events published after it.

The inventory is the single writer and numbers its events without gaps, so a follower only needs
to know the sequence number its copy reflects to tell what it misses. The protocol:

1. Bind a durable queue to ``inventory.#`` *before* asking for the snapshot: every event committed
   after the snapshot was taken then lands in the queue, so nothing can fall between the two.
2. Stream the snapshot (tagged with the sequence ``N`` it reflects) and build a new model from it.
3. Apply queued events in sequence order: ``seq <= N`` are duplicates (acked, ignored), ``N + 1``
   is applied, anything further means events went missing.
4. Missing events are fetched from the inventory's event log (``events?after=N``); if the log no
   longer holds them (HTTP 410) or still leaves a hole, take a new snapshot and start over at 3.

A delivery is acked only once its event is in the model (or known to be in it already), so a
follower that dies mid-way gets the rest redelivered. While a snapshot loads, deliveries wait in
a buffer, unacknowledged, and the queue's prefetch bounds how many the broker hands over.

Each follower instance needs its own queue: two consumers of one queue would split the events
between them and each would see a gap at every other message.
"""

from __future__ import annotations

import asyncio
import heapq
import inspect
import itertools
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import orjson
import structlog
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from dynamo_common.bus.base import Bus, Delivery, QueueSpec, Reject, Subscription
from dynamo_common.messages.envelope import Envelope
from dynamo_common.model.apply import apply_sequenced
from dynamo_common.model.objects import Inventory
from dynamo_common.model.snapshot import SnapshotError, load_lines

__all__ = [
    "EVENTS_PATTERN",
    "ReadModelClient",
    "ReadModelError",
    "ReadModelNotReady",
    "ReadModelStopped",
]

log = structlog.get_logger(__name__)

EVENTS_PATTERN = "inventory.#"
NDJSON = "application/x-ndjson"

_T = TypeVar("_T")
AppliedHook = Callable[[Envelope], Awaitable[None] | None]
SnapshotHook = Callable[[Inventory], Awaitable[None] | None]

# Batches of snapshot lines parsed ahead of the loader thread: enough to keep it busy while the
# network delivers the next chunk, little enough that a slow loader holds the download back.
_SNAPSHOT_BATCHES_AHEAD = 16
_SNAPSHOT_CHUNK = 1 << 16
# How often the loader thread checks whether the download it waits for was abandoned.
_ABORT_POLL = 0.2


class ReadModelError(Exception):
    pass


class ReadModelNotReady(ReadModelError):
    """The first snapshot has not been loaded yet (wait for ``ready``)."""


class ReadModelStopped(ReadModelError):
    pass


class _EventsGone(Exception):
    """HTTP 410: the inventory's event log no longer holds the events asked for."""


class _SnapshotAborted(Exception):
    pass


@dataclass(eq=False, slots=True)
class _Buffered:
    envelope: Envelope
    # Resolved once the event is in the model: the bus handler awaits it, then acks.
    settled: asyncio.Future[None]


def _is_transient(exc: BaseException) -> bool:
    """Worth another snapshot attempt: the inventory is starting, restarting or overloaded,
    or the download broke off (a truncated snapshot fails to parse or to add up)."""
    if isinstance(exc, httpx.HTTPStatusError):
        status = exc.response.status_code
        return status >= 500 or status in (408, 429)
    return isinstance(exc, httpx.TransportError | SnapshotError | orjson.JSONDecodeError)


async def _call_hook(hook: Callable[[_T], Awaitable[None] | None] | None, arg: _T) -> None:
    if hook is None:
        return
    try:
        result = hook(arg)
        if inspect.isawaitable(result):
            await result
    except Exception:
        # The model already holds the change and the delivery will be acked either way: a
        # failing hook must not stall replication for every other reader of the model.
        log.exception("readmodel.hook_failed", hook=getattr(hook, "__qualname__", repr(hook)))


async def _line_batches(response: httpx.Response) -> AsyncIterator[list[bytes]]:
    rest = b""
    async for chunk in response.aiter_bytes(_SNAPSHOT_CHUNK):
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        if lines:
            yield lines
    if rest:
        yield [rest]


def _parse_header(line: bytes) -> dict[str, Any]:
    try:
        header = orjson.loads(line)
    except orjson.JSONDecodeError:
        return {}
    # Anything malformed is left for load_lines to reject with its own message.
    return header if isinstance(header, dict) else {}


def _check_counts(model: Inventory, header: dict[str, Any]) -> None:
    """A snapshot cut short at a line boundary parses fine; the header's counts catch it."""
    expected = header.get("counts")
    if not isinstance(expected, dict):
        return
    actual = model.counts()
    wrong = {
        kind: {"header": count, "loaded": actual[kind]}
        for kind, count in expected.items()
        if kind in actual and actual[kind] != count
    }
    if wrong:
        raise SnapshotError(f"snapshot at seq {model.seq} is incomplete: {wrong}")


def _take_batch(
    loop: asyncio.AbstractEventLoop,
    batches: asyncio.Queue[list[bytes] | None],
    aborted: threading.Event,
) -> list[bytes] | None:
    """Runs in the loader thread: the next batch of lines, or None at the end."""
    future = asyncio.run_coroutine_threadsafe(batches.get(), loop)
    while True:
        try:
            return future.result(timeout=_ABORT_POLL)
        except TimeoutError:
            # Without this the thread would wait forever for a download that was given up
            # (cancelled, failed), and the executor would never shut down.
            if aborted.is_set():
                future.cancel()
                raise _SnapshotAborted from None


async def _hand_over(
    batches: asyncio.Queue[list[bytes] | None],
    item: list[bytes] | None,
    loader: asyncio.Future[Inventory],
) -> None:
    if not batches.full():
        batches.put_nowait(item)
        return
    put = asyncio.ensure_future(batches.put(item))
    try:
        # A loader that failed stops taking batches: waiting on the put alone would hang.
        contenders: list[asyncio.Future[Any]] = [put, loader]
        await asyncio.wait(contenders, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not put.done():
            put.cancel()
    if put.done() and not put.cancelled():
        return
    loader.result()
    raise SnapshotError("the snapshot loader stopped before the end of the snapshot")


def _retrieve_outcome(future: asyncio.Future[Inventory]) -> None:
    # Marks an abandoned loader's failure as seen, so asyncio does not log it as lost.
    if not future.cancelled():
        future.exception()


class ReadModelClient:
    """Keeps an in-memory copy of the inventory in step with the inventory's event stream.

    ``model`` is replaced by a new object on every resync, so read it through the client each
    time instead of keeping a reference. ``on_applied`` runs after each event is applied (not for
    duplicates, and not for changes that arrive inside a snapshot: ``on_snapshot`` runs then).
    """

    def __init__(
        self,
        bus: Bus,
        inventory_url: str,
        queue_name: str,
        *,
        http: httpx.AsyncClient | None = None,
        on_applied: AppliedHook | None = None,
        on_snapshot: SnapshotHook | None = None,
        prefetch: int = 256,
        page_size: int = 1000,
        snapshot_attempts: int = 10,
        retry_wait_max: float = 5.0,
        resync_wait_max: float = 30.0,
    ) -> None:
        if prefetch < 1:
            # Prefetch 0 means "unlimited" to the broker: the buffer would have no bound.
            raise ValueError("prefetch must be >= 1")
        if page_size < 1 or snapshot_attempts < 1:
            raise ValueError("page_size and snapshot_attempts must be >= 1")
        self._bus = bus
        base = inventory_url.rstrip("/")
        self._snapshot_url = f"{base}/api/v1/snapshot"
        self._events_url = f"{base}/api/v1/events"
        self._queue_name = queue_name
        self._owns_http = http is None
        self._http = http if http is not None else httpx.AsyncClient(timeout=httpx.Timeout(30.0))
        self._on_applied = on_applied
        self._on_snapshot = on_snapshot
        self._prefetch = prefetch
        self._page_size = page_size
        self._snapshot_attempts = snapshot_attempts
        self._retry_wait_max = retry_wait_max
        self._resync_wait_max = resync_wait_max

        self._model: Inventory | None = None
        self._buffer: list[tuple[int, int, _Buffered]] = []
        self._arrivals = itertools.count()
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._subscription: Subscription | None = None
        self._worker: asyncio.Task[None] | None = None
        self._started = False
        self._stopped = False
        # The model cannot be advanced from where it is (an event failed to apply, events are
        # missing for good): only a new snapshot helps.
        self._stale = False
        # Resyncs since the last applied event: spaces out resyncs that do not help.
        self._fruitless_resyncs = 0
        # Deliveries settled whose handler has not returned (and so not acked) yet.
        self._acking = 0

        self.ready = asyncio.Event()
        self.applied = 0
        self.duplicates = 0
        self.gaps_filled = 0
        self.resyncs = 0

    # -- reading --

    @property
    def model(self) -> Inventory:
        if self._model is None:
            raise ReadModelNotReady("the inventory snapshot has not been loaded yet")
        return self._model

    @property
    def seq(self) -> int:
        """Sequence number the model reflects (0 before the first snapshot: check ``ready``)."""
        return self._model.seq if self._model is not None else 0

    @property
    def in_sync(self) -> bool:
        """False from a failure to advance the model until the resync that repairs it."""
        return self._model is not None and not self._stale

    @property
    def buffered(self) -> int:
        """Deliveries received but not yet applied (nor acked)."""
        return len(self._buffer)

    async def wait_for_seq(self, seq: int, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Return once the model reflects ``seq`` or later; TimeoutError after ``timeout`` s.

        Gives read-your-writes after a command whose reply carries ``last_seq``.
        """
        if self._model is not None and self._model.seq >= seq:
            return
        if self._stopped:
            raise ReadModelStopped("the read model client is stopped")
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (seq, next(self._arrivals), waiter))
        try:
            async with asyncio.timeout(timeout):
                await waiter
        except TimeoutError:
            raise TimeoutError(
                f"read model still at seq {self.seq} after {timeout} s waiting for seq {seq}"
            ) from None
        finally:
            if waiter.cancel():
                # Not reached: drop it now rather than when the model gets that far.
                self._waiters = [entry for entry in self._waiters if entry[2] is not waiter]
                heapq.heapify(self._waiters)

    # -- lifecycle --

    async def start(self) -> None:
        """Subscribe, load the first snapshot (retrying while the inventory is unreachable),
        apply what was buffered meanwhile, then keep following in a background task."""
        if self._started:
            raise RuntimeError("a ReadModelClient can be started only once")
        self._started = True
        try:
            await self._bus.declare_queue(
                QueueSpec(self._queue_name, (("events", EVENTS_PATTERN),))
            )
            self._subscription = await self._bus.consume(
                self._queue_name, self._on_delivery, prefetch=self._prefetch
            )
            await self._install(await self._fetch_snapshot())
            self.ready.set()
            await self._drain()
        except BaseException:
            await self.stop()
            raise
        self._worker = asyncio.create_task(self._run(), name=f"readmodel:{self._queue_name}")

    async def stop(self) -> None:
        self._stopped = True
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
        # Handlers whose event is applied are one step from acking it; cancelled now, they
        # would hand the message back and the next start would receive it again.
        for _ in range(10):
            if not self._acking:
                break
            await asyncio.sleep(0)
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            # Hands every delivery still buffered (never acked) back to the queue.
            try:
                await subscription.cancel()
            except Exception as exc:
                log.warning("readmodel.cancel_failed", queue=self._queue_name, error=repr(exc))
        for _, _, item in self._buffer:
            item.settled.cancel()
        self._buffer.clear()
        waiters, self._waiters = self._waiters, []
        for _, _, waiter in waiters:
            if not waiter.done():
                waiter.set_exception(ReadModelStopped("the read model client was stopped"))
        if self._owns_http:
            self._owns_http = False
            await self._http.aclose()

    # -- deliveries --

    async def _on_delivery(self, delivery: Delivery) -> None:
        envelope = delivery.envelope
        if envelope.seq is None:
            # Cannot be ordered, so can never be applied: dead-letter it where operators see it.
            raise Reject(f"inventory event {envelope.type} ({envelope.id}) carries no seq")
        settled: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(
            self._buffer, (envelope.seq, next(self._arrivals), _Buffered(envelope, settled))
        )
        self._wake.set()
        # Returning acks the message: only once the worker has put the event in the model.
        try:
            await settled
        finally:
            if settled.done() and not settled.cancelled():
                self._acking -= 1

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._drain()
            except Exception:
                # Only a bug gets here, possibly half-way through changing the model.
                log.exception("readmodel.worker_failed", queue=self._queue_name)
                self._stale = True
                self._wake.set()
                await asyncio.sleep(self._resync_delay() or 1.0)

    async def _drain(self) -> None:
        """Apply buffered events in sequence order until the buffer is empty."""
        while self._stale or self._buffer:
            if self._stale:
                await self._resync()
                continue
            seq, _, item = self._buffer[0]
            current = self.model.seq
            if seq <= current:
                heapq.heappop(self._buffer)
                self.duplicates += 1
                self._settle(item)
            elif seq == current + 1:
                heapq.heappop(self._buffer)
                if await self._apply(item.envelope):
                    self._settle(item)
                else:
                    # Kept unacked: after the resync it is either covered by the snapshot
                    # (a duplicate) or applied against a model that is right again.
                    heapq.heappush(self._buffer, (seq, next(self._arrivals), item))
            elif not await self._fill_gap(seq):
                self._stale = True

    def _settle(self, item: _Buffered) -> None:
        # Already cancelled when the bus gave up on the delivery (consumer cancelled).
        if not item.settled.done():
            item.settled.set_result(None)
            self._acking += 1

    async def _apply(self, envelope: Envelope) -> bool:
        assert envelope.seq is not None
        model = self.model
        try:
            apply_sequenced(model, envelope.seq, envelope.type, envelope.data)
        except Exception as exc:
            # ApplyError (the model is out of step), an unknown event type or invalid data: in
            # every case the model may be half-changed and only a snapshot can be trusted.
            log.warning(
                "readmodel.apply_failed",
                seq=envelope.seq,
                type=envelope.type,
                id=envelope.id,
                error=repr(exc),
            )
            self._stale = True
            return False
        self.applied += 1
        self._fruitless_resyncs = 0
        self._notify()
        await _call_hook(self._on_applied, envelope)
        return True

    # -- catching up --

    async def _fill_gap(self, next_buffered: int) -> bool:
        """Fetch the events missing before ``next_buffered`` from the inventory's event log."""
        have = self.model.seq
        log.info("readmodel.gap", queue=self._queue_name, have=have, next_buffered=next_buffered)
        try:
            while self.model.seq + 1 < next_buffered:
                events = await self._fetch_events(after=self.model.seq)
                if not events:
                    log.warning(
                        "readmodel.gap_unfillable", have=self.model.seq, missing=next_buffered
                    )
                    return False
                before = self.model.seq
                for envelope in events:
                    current = self.model.seq
                    if envelope.seq is None or envelope.seq > current + 1:
                        log.warning("readmodel.event_log_gap", have=current, got=envelope.seq)
                        return False
                    if envelope.seq > current and not await self._apply(envelope):
                        return False
                if self.model.seq == before:
                    # Only events we already hold: asking again would loop forever.
                    log.warning("readmodel.event_log_stuck", after=before)
                    return False
        except _EventsGone:
            log.info("readmodel.events_gone", after=self.model.seq)
            return False
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            # Unreachable inventory or an answer that is not the expected page: a resync
            # retries with backoff, which is what this needs as well.
            log.warning("readmodel.gap_fill_failed", after=self.model.seq, error=repr(exc))
            return False
        self.gaps_filled += 1
        log.info("readmodel.gap_filled", start=have, seq=self.model.seq)
        return True

    async def _fetch_events(self, after: int) -> list[Envelope]:
        response = await self._http.get(
            self._events_url, params={"after": after, "limit": self._page_size}
        )
        if response.status_code == 410:
            raise _EventsGone
        response.raise_for_status()
        return [Envelope.model_validate(item) for item in response.json()["events"]]

    async def _resync(self) -> None:
        delay = self._resync_delay()
        if delay:
            await asyncio.sleep(delay)
        self._fruitless_resyncs += 1
        log.info("readmodel.resync", queue=self._queue_name, seq=self.seq)
        try:
            model = await self._fetch_snapshot()
        except Exception as exc:
            # Stays stale: the drain loop comes back here after a longer pause.
            log.error("readmodel.resync_failed", queue=self._queue_name, error=repr(exc))
            return
        self.resyncs += 1
        await self._install(model)

    def _resync_delay(self) -> float:
        if self._fruitless_resyncs == 0:
            return 0.0
        return float(min(self._resync_wait_max, 0.2 * 2 ** (self._fruitless_resyncs - 1)))

    async def _install(self, model: Inventory) -> None:
        # Swapped in whole: readers never see a model that is half loaded.
        self._model = model
        self._stale = False
        log.info("readmodel.snapshot_loaded", queue=self._queue_name, seq=model.seq)
        self._notify()
        await _call_hook(self._on_snapshot, model)

    def _notify(self) -> None:
        current = self.seq
        while self._waiters and self._waiters[0][0] <= current:
            _, _, waiter = heapq.heappop(self._waiters)
            if not waiter.done():
                waiter.set_result(None)

    # -- the snapshot --

    async def _fetch_snapshot(self) -> Inventory:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._snapshot_attempts),
            wait=wait_exponential(multiplier=0.1, max=self._retry_wait_max) + wait_random(0, 0.1),
            retry=retry_if_exception(_is_transient),
            before_sleep=self._log_retry,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._load_snapshot()
        raise AssertionError("unreachable: tenacity re-raises the last failure")

    def _log_retry(self, state: RetryCallState) -> None:
        outcome = state.outcome
        log.warning(
            "readmodel.snapshot_retry",
            url=self._snapshot_url,
            attempt=state.attempt_number,
            error=repr(outcome.exception()) if outcome is not None else None,
        )

    async def _load_snapshot(self) -> Inventory:
        """Stream the snapshot into a loader thread: building a large model takes seconds of
        CPU, which on the event loop would stall heartbeats, deliveries and health checks."""
        loop = asyncio.get_running_loop()
        batches: asyncio.Queue[list[bytes] | None] = asyncio.Queue(_SNAPSHOT_BATCHES_AHEAD)
        aborted = threading.Event()
        header: dict[str, Any] = {}

        def lines() -> Iterator[bytes]:
            while (batch := _take_batch(loop, batches, aborted)) is not None:
                yield from batch

        loader = loop.run_in_executor(None, load_lines, lines())
        loader.add_done_callback(_retrieve_outcome)
        try:
            async with self._http.stream(
                "GET", self._snapshot_url, headers={"Accept": NDJSON}
            ) as response:
                if response.is_error:
                    await response.aread()
                    response.raise_for_status()
                async for batch in _line_batches(response):
                    if not header:
                        header = _parse_header(batch[0])
                    await _hand_over(batches, batch, loader)
                await _hand_over(batches, None, loader)
            model = await loader
        finally:
            if not loader.done():
                aborted.set()
        _check_counts(model, header)
        return model


async def follow(readmodel: ReadModelClient) -> None:
    """Run ``readmodel.start()`` as a service's background task. When the client gives up
    after its retries, the service stays up: whatever needs the model refuses (not ready),
    ``/readyz`` says why, and the records API keeps serving."""
    try:
        await readmodel.start()
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("the inventory read model could not be loaded")


async def readmodel_ready(readmodel: ReadModelClient | None) -> bool:
    """The ``/readyz`` check of a service that follows the inventory."""
    return readmodel is not None and readmodel.ready.is_set()
