"""The simulation kernel: one strategy over simulated time.

Time advances an hour at a time. Within an hour, in this order: transfers that finished
complete their block replicas; datasets produced in that hour appear; the strategy acts
(agents' cycles when due, or the threshold reaper and explicit requests); then the hour's
accesses run as jobs on the CPU slots of the sites that hold a complete disk copy.

The inventory changes only the way the inventory service changes it: a copy creates empty
block replicas that become complete when their transfer ends (so the next cycle sees copies
in flight, as the services would); a deletion removes replicas; a hand-off changes an
owner. Each destination receives one block at a time at the rate of the link (the smaller of
the two sites' rates; tape adds a staging delay), which is what a link saturated by FTS
does.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from dynamo_common.messages.types import DatasetStatus, SiteStatus, StorageType
from dynamo_common.model.objects import (
    Block,
    BlockReplica,
    Dataset,
    DatasetReplica,
    Inventory,
    Site,
)
from dynamo_common.policy.compiler import Pred
from dynamo_common.simulation.accesslog import SimAccessLog
from dynamo_common.simulation.agent import Copy, CopyRequest, Deletion, OwnerChange
from dynamo_common.simulation.metrics import Metrics
from dynamo_common.simulation.trace import NewDataset, Trace
from dynamo_common.simulation.world import SiteParams

HOUR = 3600.0
DAY = 86400.0


class ConservationError(AssertionError):
    """The kernel's books disagree with the inventory (a bug, caught in checked mode)."""


@dataclass(slots=True)
class Task:
    """One block to copy to one site."""

    replica: BlockReplica
    source: str = ""
    cancelled: bool = False
    placed_by_agent: bool = False


@dataclass(slots=True)
class SiteBook:
    params: SiteParams
    site: Site
    used: int = 0
    """Partition bytes present."""
    pending: int = 0
    """Partition bytes of the copies queued or in flight to the site."""
    total: int = 0
    """Bytes of every replica present, any owner."""
    queue: deque[Task] = field(default_factory=deque)
    active: Task | None = None
    free_slots: int = 0

    @property
    def capacity(self) -> int:
        return self.params.capacity

    def occupancy(self) -> float:
        return self.used / self.capacity if self.capacity else 0.0


def replica_complete(replica: DatasetReplica) -> bool:
    blocks = replica.dataset.blocks
    brs = replica.block_replicas
    if len(brs) != len(blocks):
        return False
    return all(br.size >= br.block.size for br in brs.values())


class Kernel:
    def __init__(
        self,
        inventory: Inventory,
        params: list[SiteParams],
        member: Pred,
        trace: Trace,
        start: float,
        *,
        tape_latency: float,
        request_probability: float,
        request_group: str,
        production_group: str,
        seed: int,
        check: str,
        sample_hours: float,
        owner_only: bool = False,
        requests_per_group: bool = False,
    ) -> None:
        """``owner_only``: the partition depends on nothing but a block replica's site and
        owner, so membership is remembered per (site, owner)."""
        self.inventory = inventory
        self._member = member
        self.trace = trace
        self.start = start
        self.now = start
        self.hour = 0
        self.tape_latency = tape_latency
        self.request_probability = request_probability
        self.requests_per_group = requests_per_group
        """Whether a user group's choice to ask for copies is drawn once per (dataset, site)
        rather than again every hour its jobs miss."""
        self.request_group = request_group
        self.production_group = production_group
        self.seed = seed
        self.check = check
        self.sample_hours = sample_hours
        self.books: dict[str, SiteBook] = {}
        for p in params:
            self.books[p.name] = SiteBook(p, inventory.sites[p.name])
        self.site_order = [p.name for p in params]
        self.log = SimAccessLog(start)
        self.metrics = Metrics(start, [p.name for p in params if p.capacity > 0])
        self.events: list[tuple[float, int, str]] = []
        self._seq = 0
        self.inflight: dict[tuple[str, int], Task] = {}
        """(site, block id) -> the task bringing the block there."""
        self.requests: dict[tuple[str, str], CopyRequest] = {}
        self._request_id = 0
        self.request_ttl = 3 * DAY
        self.last_used: dict[tuple[str, str], float] = {}
        """(dataset, site) -> last job that read it there (for LRU)."""
        self._datasets: list[Dataset | None] = [inventory.datasets.get(n) for n in trace.datasets]
        self._dataset_index = {n: i for i, n in enumerate(trace.datasets)}
        self._new_by_hour: dict[int, list[NewDataset]] = {}
        for new in trace.new:
            self._new_by_hour.setdefault(new.hour, []).append(new)
        self._trace_sites = trace.sites
        self._holders: dict[Dataset, list[SiteBook]] = {}
        """Per dataset, the ready disk sites with a complete copy (dropped on any change)."""
        self._member_cache: dict[tuple[Site, object], bool] | None = {} if owner_only else None
        self._ids = max(
            (b.id for d in inventory.datasets.values() for b in d.blocks.values()), default=0
        )
        self._dataset_ids = max((d.id for d in inventory.datasets.values()), default=0)
        for book in self.books.values():
            self._recount(book)
        self.verify()

    # ------------------------------------------------------------------ the books

    def member(self, br: BlockReplica) -> bool:
        cache = self._member_cache
        if cache is None:
            return bool(self._member(br))
        key = (br.site, br.group)
        found = cache.get(key)
        if found is None:
            found = cache[key] = bool(self._member(br))
        return found

    def holders(self, dataset: Dataset) -> list[SiteBook]:
        found = self._holders.get(dataset)
        if found is None:
            books = self.books
            found = self._holders[dataset] = [
                books[name]
                for name, replica in dataset.replicas.items()
                if replica.site.storage_type is StorageType.DISK
                and replica.site.status is SiteStatus.READY
                and name in books
                and replica_complete(replica)
            ]
        return found

    def _recount(self, book: SiteBook) -> tuple[int, int]:
        used = total = 0
        for replica in book.site.dataset_replicas.values():
            for br in replica.block_replicas.values():
                total += br.size
                if self.member(br):
                    used += br.size
        book.used, book.total = used, total
        return used, total

    def verify(self) -> None:
        """Conservation: a site's counted bytes are the sum of its replicas; no site holds
        more than its capacity; pending bytes are those of the copies queued."""
        pending_by_site: dict[str, int] = {}
        for (site, _), task in self.inflight.items():
            if not task.cancelled and self.member(task.replica):
                pending_by_site[site] = pending_by_site.get(site, 0) + task.replica.block.size
        for name, book in self.books.items():
            used = total = 0
            for replica in book.site.dataset_replicas.values():
                for br in replica.block_replicas.values():
                    total += br.size
                    if self.member(br):
                        used += br.size
            if (used, total) != (book.used, book.total):
                raise ConservationError(
                    f"{name}: counted {book.used}/{book.total} bytes, replicas hold {used}/{total}"
                )
            pending = pending_by_site.get(name, 0)
            if pending != book.pending:
                raise ConservationError(f"{name}: pending {book.pending}, queued {pending}")
            if book.capacity and book.used > book.capacity:
                self.metrics.over_capacity += 1
                raise ConservationError(
                    f"{name}: {book.used} bytes above its capacity {book.capacity}"
                )

    def _checked(self) -> None:
        if self.check == "full":
            self.verify()

    # ------------------------------------------------------------------ changes

    def _add_block_replica(
        self, dataset: Dataset, block: Block, site: Site, group: str, size: int, growing: bool
    ) -> BlockReplica:
        owner = self.inventory.groups[group]
        replica = dataset.replicas.get(site.name)
        if replica is None:
            replica = DatasetReplica(dataset, site, owner, growing, self.now)
            dataset.replicas[site.name] = replica
            site.dataset_replicas[dataset.name] = replica
        br = BlockReplica(block, site, owner, False, size, block.num_files if size else 0, self.now)
        replica.block_replicas[block.name] = br
        block.replicas.append(br)
        return br

    def copy(self, copy: Copy, *, by_agent: bool) -> bool:
        """Start a copy; False when refused (unknown data, no room, already there)."""
        dataset = self.inventory.datasets.get(copy.dataset)
        book = self.books.get(copy.site)
        if (
            dataset is None
            or book is None
            or not book.params.disk
            or book.site.status is not SiteStatus.READY
            or copy.group not in self.inventory.groups
        ):
            self.metrics.copies_refused += 1
            return False
        if copy.block is None:
            blocks = sorted(dataset.blocks.values(), key=lambda b: b.name)
        else:
            one = dataset.blocks.get(copy.block)
            blocks = [one] if one is not None else []
        present = dataset.replicas.get(copy.site)
        wanted = [b for b in blocks if present is None or b.name not in present.block_replicas]
        if not wanted:
            return False
        volume = sum(b.size for b in wanted)
        if book.used + book.pending + volume > book.capacity:
            self.metrics.copies_refused += 1
            return False
        for block in wanted:
            br = self._add_block_replica(
                dataset, block, book.site, copy.group, 0, growing=copy.block is None
            )
            task = Task(br, placed_by_agent=by_agent)
            self.inflight[(copy.site, block.id)] = task
            if self.member(br):
                book.pending += block.size
            book.queue.append(task)
        self.metrics.copies += 1
        self._start_next(book)
        self._checked()
        return True

    def _source(self, block: Block, dest: str) -> tuple[SiteBook, float] | None:
        best: tuple[int, float, str] | None = None
        for br in block.replicas:
            if br.site.name == dest or br.size < block.size:
                continue
            if br.site.status is not SiteStatus.READY:
                continue
            book = self.books.get(br.site.name)
            if book is None:
                continue
            tape = br.site.storage_type is StorageType.TAPE
            key = (1 if tape else 0, -book.params.bandwidth, br.site.name)
            if best is None or key < best:
                best = key
        if best is None:
            return None
        book = self.books[best[2]]
        return book, self.tape_latency if best[0] else 0.0

    def _start_next(self, book: SiteBook) -> None:
        while book.active is None and book.queue:
            task = book.queue.popleft()
            if task.cancelled:
                continue
            found = self._source(task.replica.block, book.params.name)
            if found is None:
                self._fail(book, task)
                continue
            source, delay = found
            rate = min(book.params.bandwidth, source.params.bandwidth)
            task.source = source.params.name
            book.active = task
            finish = self.now + delay + task.replica.block.size / rate
            self._seq += 1
            heapq.heappush(self.events, (finish, self._seq, book.params.name))

    def _fail(self, book: SiteBook, task: Task) -> None:
        """No source left for the block: the empty replica goes."""
        self.metrics.copies_failed += 1
        br = task.replica
        self.inflight.pop((book.params.name, br.block.id), None)
        if self.member(br):
            book.pending -= br.block.size
        self._remove(br)

    def _finish(self, name: str) -> None:
        book = self.books[name]
        task = book.active
        book.active = None
        if task is not None and not task.cancelled:
            br = task.replica
            self.inflight.pop((name, br.block.id), None)
            size = br.block.size
            if self.member(br):
                book.pending -= size
                book.used += size
            book.total += size
            br.size = size
            br.num_files = br.block.num_files
            self._holders.pop(br.block.dataset, None)
            br.last_update = self.now
            self.metrics.transferred(self.now, size)
        self._start_next(book)
        self._checked()

    def _remove(self, br: BlockReplica) -> None:
        site = br.site
        dataset = br.block.dataset
        self._holders.pop(dataset, None)
        replica = dataset.replicas.get(site.name)
        if replica is None:
            return
        replica.block_replicas.pop(br.block.name, None)
        br.block.replicas.remove(br)
        if not replica.block_replicas:
            del dataset.replicas[site.name]
            site.dataset_replicas.pop(dataset.name, None)

    def delete(self, deletion: Deletion) -> int:
        """Remove block replicas (a whole dataset replica when ``block`` is None); bytes
        freed. A deletion of the last complete copy of a block is carried out and counted."""
        dataset = self.inventory.datasets.get(deletion.dataset)
        replica = dataset.replicas.get(deletion.site) if dataset is not None else None
        book = self.books.get(deletion.site)
        if replica is None or book is None:
            return 0
        if deletion.block is None:
            targets = [replica.block_replicas[n] for n in sorted(replica.block_replicas)]
        else:
            one = replica.block_replicas.get(deletion.block)
            targets = [one] if one is not None else []
        freed = 0
        for br in targets:
            block = br.block
            task = self.inflight.pop((deletion.site, block.id), None)
            member = self.member(br)
            if task is not None:
                task.cancelled = True
                if member:
                    book.pending -= block.size
            if br.size >= block.size:
                others = [o for o in block.replicas if o is not br and o.size >= block.size]
                if not others:
                    self.metrics.last_copies_deleted += 1
                if not any(o.site.storage_type is StorageType.DISK for o in others):
                    self.metrics.last_disk_copies_deleted += 1
            if member:
                book.used -= br.size
            book.total -= br.size
            freed += br.size
            self._remove(br)
        if targets:
            self.metrics.deleted(self.now, freed)
        self._checked()
        return freed

    def hand_off(self, change: OwnerChange) -> None:
        dataset = self.inventory.datasets.get(change.dataset)
        replica = dataset.replicas.get(change.site) if dataset is not None else None
        br = replica.block_replicas.get(change.block) if replica is not None else None
        group = self.inventory.groups.get(change.group)
        if br is None or group is None:
            return
        book = self.books[change.site]
        before = self.member(br)
        br.group = group
        self._holders.pop(br.block.dataset, None)
        after = self.member(br)
        if before != after:
            sign = 1 if after else -1
            book.used += sign * br.size
            task = self.inflight.get((change.site, br.block.id))
            if task is not None and not task.cancelled:
                book.pending += sign * br.block.size
        self._checked()

    # ------------------------------------------------------------------ production

    def _produce(self, new: NewDataset) -> None:
        self._dataset_ids += 1
        dataset = Dataset(
            self._dataset_ids,
            new.name,
            DatasetStatus.VALID,
            "mc",
            "",
            False,
            self.now,
        )
        self.inventory.datasets[new.name] = dataset
        for i, (size, files) in enumerate(zip(new.block_sizes, new.block_files, strict=True)):
            self._ids += 1
            block = Block(self._ids, dataset, f"b{i:04d}", size, files, False, self.now)
            dataset.blocks[block.name] = block
            dataset.size += size
            dataset.num_files += files
        index = self._dataset_index.get(new.name)
        if index is not None:
            self._datasets[index] = dataset
        volume = new.size
        candidates = [
            new.site,
            *sorted(
                (
                    n
                    for n, b in self.books.items()
                    if b.capacity and b.params.disk and b.site.status is SiteStatus.READY
                ),
                key=lambda n: (
                    -(self.books[n].capacity - self.books[n].used - self.books[n].pending)
                ),
            ),
        ]
        for name in candidates:
            book = self.books[name]
            if book.capacity and book.used + book.pending + volume <= book.capacity:
                for block in dataset.blocks.values():
                    br = self._add_block_replica(
                        dataset, block, book.site, self.production_group, block.size, True
                    )
                    book.total += block.size
                    if self.member(br):
                        book.used += block.size
                self.metrics.produced += 1
                self._checked()
                return
        self.metrics.production_refused += 1

    # ------------------------------------------------------------------ requests

    def open_requests(self) -> list[CopyRequest]:
        return sorted(self.requests.values(), key=lambda r: r.id)

    def _request(self, dataset: str, site: str) -> None:
        key = (dataset, site)
        if key in self.requests:
            return
        self._request_id += 1
        self.requests[key] = CopyRequest(
            self._request_id, dataset, site, self.request_group, self.now
        )
        self.metrics.requests += 1

    def _settle_requests(self) -> None:
        """Requests are done once a complete copy is at their site; they lapse after a TTL."""
        for key, request in list(self.requests.items()):
            dataset = self.inventory.datasets.get(request.dataset)
            replica = dataset.replicas.get(request.site) if dataset is not None else None
            if replica is not None and replica_complete(replica):
                del self.requests[key]
            elif self.now - request.created > self.request_ttl:
                del self.requests[key]
                self.metrics.requests_expired += 1

    def carry_out_requests(self) -> None:
        """Without a dealer, a request is a copy right away (as a Rucio rule is)."""
        for request in self.open_requests():
            dataset = self.inventory.datasets.get(request.dataset)
            if dataset is None or request.site in dataset.replicas:
                continue
            self.copy(
                Copy(request.dataset, None, request.site, request.group, f"request {request.id}"),
                by_agent=False,
            )

    def placed(self) -> frozenset[tuple[str, str | None, str]]:
        keys: set[tuple[str, str | None, str]] = set()
        for (site, _), task in self.inflight.items():
            if task.placed_by_agent and not task.cancelled:
                block = task.replica.block
                keys.add((block.dataset.name, block.name, site))
                keys.add((block.dataset.name, None, site))
        return frozenset(keys)

    # ------------------------------------------------------------------ jobs

    def _draw(self, dataset: int, site: int) -> float:
        """A uniform number fixed by (seed, dataset, site, hour), or by (seed, dataset, site)
        when users decide once per group: the same user decision under every strategy,
        whatever else the strategy drew."""
        hour = 0 if self.requests_per_group else self.hour
        x = (dataset * 0x9E3779B97F4A7C15 + site * 0xC2B2AE3D27D4EB4F) & 0xFFFFFFFFFFFFFFFF
        x ^= (hour * 0x165667B19E3779F9 + self.seed * 0x27D4EB2F165667C5) & 0xFFFFFFFFFFFFFFFF
        x = (x ^ (x >> 31)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        x = (x ^ (x >> 29)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 32
        return x / 2**64

    def run_jobs(self) -> None:
        books = self.books
        for book in books.values():
            book.free_slots = book.params.slots
        datasets, sites, counts = self.trace.at(self.hour)
        now = self.now
        metrics = self.metrics
        probability = self.request_probability
        names = self._trace_sites
        for d, s, c in zip(datasets.tolist(), sites.tolist(), counts.tolist(), strict=True):
            dataset = self._datasets[d]
            home = names[s]
            metrics.accesses += c
            if dataset is None:
                metrics.no_copy += c
                continue
            self.log.add(dataset.name, home, now, c)
            holders = self.holders(dataset)
            if not holders:
                metrics.no_copy += c
                if probability and self._draw(d, s) < probability:
                    self._request(dataset.name, home)
                continue
            left = c
            at_home = 0
            local = books.get(home)
            if local is not None and local in holders and local.free_slots > 0:
                at_home = min(left, local.free_slots)
                local.free_slots -= at_home
                left -= at_home
                self.last_used[(dataset.name, home)] = now
            if left:
                for book in sorted(holders, key=lambda b: (-b.free_slots, b.params.name)):
                    if not left or book.free_slots <= 0:
                        break
                    run = min(left, book.free_slots)
                    book.free_slots -= run
                    left -= run
                    self.last_used[(dataset.name, book.params.name)] = now
            metrics.hits += c - left
            metrics.at_home += at_home
            metrics.waited += left
            metrics.served(now, c - left, c)
            if at_home < c and probability and self._draw(d, s) < probability:
                self._request(dataset.name, home)

    # ------------------------------------------------------------------ the clock

    def advance(self, hour: int) -> None:
        """Move to the start of ``hour``: finish the transfers due, produce new datasets."""
        self.hour = hour
        self.advance_to(self.start + hour * HOUR)
        for new in self._new_by_hour.get(hour, ()):
            self._produce(new)
        self._settle_requests()

    def advance_to(self, until: float) -> None:
        """Finish the transfers due by ``until``, each at its own time."""
        while self.events and self.events[0][0] <= until:
            when, _, name = heapq.heappop(self.events)
            self.now = when
            self._finish(name)
        self.now = until

    def sample(self) -> None:
        self.metrics.sample(
            self.now, {n: b.occupancy() for n, b in self.books.items() if b.capacity}
        )
        # Sampled checks once a simulated day: a check reads every replica of the grid.
        if self.check == "full" or (self.check == "sampled" and self.hour % 24 == 0):
            self.verify()

    def hourly(self) -> None:
        self.metrics.hourly({n: b.used / b.capacity for n, b in self.books.items() if b.capacity})

    def occupancy_order(self) -> Iterable[SiteBook]:
        return (self.books[n] for n in self.site_order)
