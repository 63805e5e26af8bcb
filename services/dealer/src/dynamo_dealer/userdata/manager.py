"""User data at run time: declaring datasets, verifying and registering injected files into
Dynamo's blocks, completing, consolidating at one site, cleaning up, deleting.

The inventory stays the single writer: every change is a command on the bus. Injections of
one dataset run one at a time (a lock per dataset), so two batches never fill the same open
block twice; registration of a batch's files is one ``inventory.file.add.v1`` command, which
the inventory applies whole or not at all, so a refused batch leaves no file behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from dynamo_common.bus.base import RequestTimeout
from dynamo_common.messages import inventory as inv
from dynamo_common.messages import transfer as tr
from dynamo_common.messages.registry import InventoryCommand, TransferCommand
from dynamo_common.messages.types import DatasetStatus
from dynamo_common.model.objects import Inventory
from dynamo_common.policy.partitions import site_usage
from dynamo_common.storage import (
    AlreadyExists,
    PfnError,
    PfnMapper,
    Storage,
    StorageError,
    open_storage,
)
from dynamo_dealer.repository import store
from dynamo_dealer.repository import userdata as db
from dynamo_dealer.runtime import CycleBusy, DealerRuntime
from dynamo_dealer.service import deletions as dels
from dynamo_dealer.service import userdata as ud
from dynamo_dealer.service.commands import command_id

log = logging.getLogger("dynamo.dealer.userdata")
VERIFY_PARALLEL = 8


class FilesRefused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Imported:
    source: str
    file: ud.NewFile


def _pfn(mapper: PfnMapper, lfn: str) -> str | None:
    """The PFN of the first of the site's protocols that maps ``lfn``."""
    for protocol in mapper.protocols:
        with contextlib.suppress(PfnError):
            return mapper.lfn_to_pfn(lfn, protocol)
    return None


@dataclass(frozen=True, slots=True)
class Failure:
    lfn: str
    reason: str


@dataclass
class Injected:
    registered: list[dict[str, Any]] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)


@dataclass
class UserData:
    rt: DealerRuntime
    storage: Storage | None = None
    locks: defaultdict[str, asyncio.Lock] = field(default_factory=lambda: defaultdict(asyncio.Lock))
    cleaned: set[tuple[str, str, str]] = field(default_factory=set)
    """(dataset, block, site) whose clean-up commands were answered (resent after a restart
    under the same ids, which the receivers answer from their record)."""
    last_cycle: float = 0.0

    @property
    def settings(self) -> Any:
        return self.rt.settings

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.rt.clock(), UTC)

    async def close(self) -> None:
        if self.storage is not None:
            await self.storage.close()

    # ------------------------------------------------------------------------- commands

    async def _inventory(self, type_: str, body: Any, cid: str) -> inv.CommandReply:
        reply = await self.rt._request(type_, body, cid)
        return inv.CommandReply.model_validate(reply.data)

    async def _must(self, type_: str, body: Any, cid: str) -> None:
        reply = await self._inventory(type_, body, cid)
        if reply.status != "accepted":
            raise ud.Refused(409, f"the inventory refused: {reply.reason}")

    async def _ensure_group(self, model: Inventory) -> None:
        name = self.settings.userdata_group
        if name not in model.groups:
            await self._must(
                InventoryCommand.UPSERT_GROUPS,
                inv.UpsertGroups(groups=[inv.GroupSpec(name=name)]),
                command_id("userdata-group", name),
            )

    # -------------------------------------------------------------------------- declare

    async def declare(self, name: str, who: str, admin: bool) -> Any:
        owner = ud.owner_of(name)
        ud.may_act(who, owner, admin)
        model = await self.rt.model()
        if name in model.datasets:
            raise ud.Refused(409, f"dataset {name} exists already")
        async with self.rt.pool.acquire() as conn:
            if await db.get_dataset(conn, name) is not None:
                raise ud.Refused(409, f"dataset {name} exists already")
        await self._ensure_group(model)
        await self._must(
            InventoryCommand.UPSERT_DATASETS,
            inv.UpsertDatasets(
                datasets=[
                    inv.DatasetSpec(
                        name=name, status=DatasetStatus.PRODUCTION, data_type="user", is_open=True
                    )
                ]
            ),
            command_id("userdata-declare", name, self.rt.clock()),
        )
        async with self.rt.pool.acquire() as conn:
            row = await db.add_dataset(conn, name, owner, self.now())
        if row is None:
            raise ud.Refused(409, f"dataset {name} exists already")
        return row

    async def _owned(self, name: str, who: str, admin: bool) -> Any:
        owner = ud.owner_of(name)
        ud.may_act(who, owner, admin)
        async with self.rt.pool.acquire() as conn:
            row = await db.get_dataset(conn, name)
        if row is None:
            raise ud.Refused(404, f"no user dataset {name}")
        return row

    # --------------------------------------------------------------------------- inject

    async def inject(
        self, name: str, site: str, files: Sequence[ud.NewFile], who: str, admin: bool
    ) -> Injected:
        owner = (await self._owned(name, who, admin))["owner"]
        ud.check_lfns([f.lfn for f in files], owner, self.settings.userdata_root)
        async with self.locks[name]:
            async with self.rt.pool.acquire() as conn:
                row = await db.get_dataset(conn, name)
                known = await db.taken(conn, [f.lfn for f in files])
            if row is None or row["state"] != "open":
                state = "gone" if row is None else row["state"]
                raise ud.Refused(409, f"dataset {name} is {state}: no more files")
            model = await self.rt.model()
            if site not in model.sites:
                raise ud.Refused(422, f"unknown site {site}")
            result = Injected()
            result.failed += [Failure(lfn, "already registered") for lfn in sorted(known)]
            fresh = [f for f in files if f.lfn not in known]
            await self._check_quotas(model, owner, site, sum(f.size for f in fresh))
            checks = await self._verify(model, site, fresh)
            good = [f for f, why in zip(fresh, checks, strict=True) if why is None]
            result.failed += [
                Failure(f.lfn, why) for f, why in zip(fresh, checks, strict=True) if why
            ]
            if good:
                try:
                    result.registered = await self._register(name, site, owner, good)
                except FilesRefused as exc:
                    result.failed += [Failure(f.lfn, exc.reason) for f in good]
            return result

    # --------------------------------------------------------------------------- import

    async def import_files(
        self, name: str, site: str, files: Sequence[Imported], who: str, admin: bool
    ) -> Injected:
        """Data produced elsewhere: each file is copied from its source into the namespace
        at ``site`` (gfal2, size and adler32 checked at both ends), then injected."""
        owner = (await self._owned(name, who, admin))["owner"]
        ud.check_lfns([f.file.lfn for f in files], owner, self.settings.userdata_root)
        schemes = set(self.settings.userdata_import_schemes)
        for f in files:
            scheme = f.source.split("://", 1)[0] if "://" in f.source else ""
            if scheme not in schemes:
                raise ud.Refused(422, f"{f.source}: sources must be URLs of {sorted(schemes)}")
        model = await self.rt.model()
        if site not in model.sites:
            raise ud.Refused(422, f"unknown site {site}")
        async with self.rt.pool.acquire() as conn:
            row = await db.get_dataset(conn, name)
            known = await db.taken(conn, [f.file.lfn for f in files])
        if row is None or row["state"] != "open":
            raise ud.Refused(409, f"dataset {name} is not open: no more files")
        await self._check_quotas(
            model, owner, site, sum(f.file.size for f in files if f.file.lfn not in known)
        )
        storage = self._storage()
        mapper = PfnMapper.from_site(model.sites[site])
        failed: list[Failure] = []
        copied: list[ud.NewFile] = []
        for f in files:
            if f.file.lfn in known:
                continue
            dest = _pfn(mapper, f.file.lfn)
            if dest is None:
                failed.append(Failure(f.file.lfn, f"{site} maps no protocol for it"))
                continue
            try:
                await storage.copy(
                    f.source, dest, size=f.file.size, adler32=f.file.adler32, overwrite=False
                )
            except AlreadyExists:
                pass  # an earlier attempt, or a stray file: verification decides
            except StorageError as exc:
                failed.append(Failure(f.file.lfn, f"copy from {f.source} failed: {exc}"))
                continue
            copied.append(f.file)
        result = await self.inject(name, site, copied, who, admin) if copied else Injected()
        result.failed += [Failure(lfn, "already registered") for lfn in sorted(known)] + failed
        return result

    def _storage(self) -> Storage:
        if self.storage is None:
            self.storage = open_storage("gfal")
        return self.storage

    async def _check_quotas(self, model: Inventory, owner: str, site: str, asked: int) -> None:
        async with self.rt.pool.acquire() as conn:
            used = await db.user_bytes(conn, owner)
        refusal = ud.over_quota(f"user quota of {owner}", used, asked, self.user_quota())
        if refusal is not None:
            raise refusal
        self._check_site(model, site, asked)

    def user_quota(self) -> int:
        return int(self.settings.userdata_user_quota)

    def site_figures(self, model: Inventory, site: str) -> tuple[int, int]:
        partition = self.settings.userdata_partition
        if partition not in model.partitions:
            raise ud.Refused(422, f"the user data partition {partition} is not defined")
        return site_usage(model)[site][partition]

    def _check_site(self, model: Inventory, site: str, asked: int) -> None:
        used, quota = self.site_figures(model, site)
        if quota <= 0:
            raise ud.Refused(422, f"{site} has no quota for user data", used=used, quota=0)
        refusal = ud.over_quota(f"user data quota at {site}", used, asked, quota)
        if refusal is not None:
            raise refusal

    async def _verify(
        self, model: Inventory, site: str, files: Sequence[ud.NewFile]
    ) -> list[str | None]:
        """Why each file fails verification (None: on storage with that size and adler32)."""
        storage = self._storage()
        mapper = PfnMapper.from_site(model.sites[site])
        gate = asyncio.Semaphore(VERIFY_PARALLEL)

        async def check(f: ud.NewFile) -> str | None:
            pfn = _pfn(mapper, f.lfn)
            if pfn is None:
                return f"{site} maps no protocol for {f.lfn}"
            async with gate:
                try:
                    stat = await storage.stat(pfn)
                    if stat.size != f.size:
                        return f"size on storage {stat.size}, declared {f.size}"
                    found = (await storage.adler32(pfn)).lower().zfill(8)
                except StorageError as exc:
                    return f"not verified on storage: {exc}"
            if found != f.adler32.lower():
                return f"adler32 on storage {found}, declared {f.adler32}"
            return None

        return list(await asyncio.gather(*(check(f) for f in files)))

    async def _register(
        self, name: str, site: str, owner: str, files: Sequence[ud.NewFile]
    ) -> list[dict[str, Any]]:
        group = self.settings.userdata_group
        async with self.rt.pool.acquire() as conn:
            row = await db.get_dataset(conn, name)
            assert row is not None
            current = await db.open_block(conn, name, site)
            plans = ud.assign(
                files, current, row["next_block"], self.settings.userdata_max_block_files
            )
            await db.record_blocks(conn, name, site, plans)
        batch = hashlib.sha256("\n".join(sorted(f.lfn for f in files)).encode()).hexdigest()
        key = f"userdata/{name}/{site}/{batch}"
        # What the inventory lacks, not what this plan calls new: a block recorded here
        # whose creation was not answered last time is made now.
        ds = (await self.rt.model()).datasets.get(name)
        blocks = ds.blocks if ds is not None else {}
        unknown = [p for p in plans if p.name not in blocks]
        if unknown:
            await self._must(
                InventoryCommand.UPSERT_BLOCKS,
                inv.UpsertBlocks(
                    blocks=[inv.BlockSpec(dataset=name, name=p.name) for p in unknown]
                ),
                command_id(key, "blocks"),
            )
        unheld = [
            p
            for p in plans
            if p.name not in blocks or all(r.site.name != site for r in blocks[p.name].replicas)
        ]
        if unheld:
            await self._must(
                InventoryCommand.CREATE_REPLICAS,
                inv.CreateReplicas(
                    block_replicas=[
                        inv.BlockReplicaSpec(
                            dataset=name, block=p.name, site=site, group=group, size=0, num_files=0
                        )
                        for p in unheld
                    ]
                ),
                command_id(key, "replicas"),
            )
        # The one step that registers files: whole or not at all.
        added = await self._inventory(
            InventoryCommand.ADD_FILES,
            inv.AddFiles(
                files=[
                    inv.FileSpec(
                        dataset=name, block=p.name, lfn=f.lfn, size=f.size, adler32=f.adler32
                    )
                    for p in plans
                    for f in p.files
                ]
            ),
            command_id(key, "files"),
        )
        if added.status != "accepted":
            raise FilesRefused(f"refused by the inventory: {added.reason}")
        async with self.rt.pool.acquire() as conn, conn.transaction():
            await db.record_files(conn, name, site, owner, plans, self.now())
        await self._must(
            InventoryCommand.UPDATE_REPLICAS,
            inv.UpdateReplicas(
                block_replicas=[
                    inv.BlockReplicaUpdate(dataset=name, block=p.name, site=site, complete=True)
                    for p in plans
                ]
            ),
            command_id(key, "complete"),
        )
        closing = [p for p in plans if p.close]
        if closing:
            await self._close(name, [p.name for p in closing], key)
        return [
            {"lfn": f.lfn, "block": p.name, "site": site, "size": f.size}
            for p in plans
            for f in p.files
        ]

    async def _close(self, name: str, blocks: Sequence[str], key: str) -> None:
        await self._must(
            InventoryCommand.UPSERT_BLOCKS,
            inv.UpsertBlocks(
                blocks=[inv.BlockSpec(dataset=name, name=b, is_open=False) for b in blocks]
            ),
            command_id(key, "close", *blocks),
        )

    # ------------------------------------------------------------------------- complete

    async def complete(self, name: str, who: str, admin: bool) -> Any:
        await self._owned(name, who, admin)
        async with self.locks[name]:
            async with self.rt.pool.acquire() as conn:
                row = await db.get_dataset(conn, name)
                assert row is not None
                if row["state"] != "open":
                    raise ud.Refused(409, f"dataset {name} is {row['state']}")
                still_open = await db.open_blocks(conn, name)
            model = await self.rt.model()
            ds = model.datasets.get(name)
            in_inventory = [b for b in still_open if ds is not None and b in ds.blocks]
            if in_inventory:
                await self._close(name, in_inventory, f"userdata/{name}/complete")
            await self._must(
                InventoryCommand.UPSERT_DATASETS,
                inv.UpsertDatasets(
                    datasets=[
                        inv.DatasetSpec(
                            name=name, status=DatasetStatus.VALID, data_type="user", is_open=False
                        )
                    ]
                ),
                command_id("userdata-complete", name),
            )
            async with self.rt.pool.acquire() as conn, conn.transaction():
                await db.close_blocks(conn, name)
                await db.set_state(conn, name, "complete", self.now())
                done = await db.get_dataset(conn, name)
        return done

    # ------------------------------------------------------------------------ subscribe

    async def subscribe(self, name: str, site: str, who: str, admin: bool) -> Any:
        row = await self._owned(name, who, admin)
        if row["state"] == "deleting":
            raise ud.Refused(409, f"dataset {name} is being deleted")
        model = await self.rt.model()
        if site not in model.sites:
            raise ud.Refused(422, f"unknown site {site}")
        if row["home"] is not None and row["home"] != site:
            raise ud.Refused(409, f"dataset {name} is already consolidated at {row['home']}")
        self._check_site(model, site, ud.missing_at(model, name, site))
        now = self.now()
        async with self.rt.pool.acquire() as conn, conn.transaction():
            if not await db.set_home(conn, name, site, now):
                raise ud.Refused(409, f"dataset {name} is consolidated at another site")
            await store.add_subscription(conn, name, site, self.settings.userdata_group, who, now)
            updated = await db.get_dataset(conn, name)
        # Consolidation starts now rather than at the next scheduled cycle; a cycle already
        # queued or running is just as good (the next one sees the subscription).
        with contextlib.suppress(CycleBusy):
            await self.rt.submit(requested_by=who, comment=f"user data subscription of {name}")
        self.last_cycle = self.rt.clock()
        return updated

    # ---------------------------------------------------------------------------- delete

    async def delete(self, name: str, who: str, admin: bool) -> Any:
        await self._owned(name, who, admin)
        async with self.locks[name]:
            now = self.now()
            async with self.rt.pool.acquire() as conn, conn.transaction():
                await db.set_state(conn, name, "deleting", now)
                subs, _ = await store.list_subscriptions(
                    conn, site=None, item=name, limit=100, offset=0
                )
                for sub in subs:
                    if sub["item"] == name:
                        await store.delete_subscription(conn, sub["id"])
                row = await db.get_dataset(conn, name)
        await self.carry_out_deletions()
        return row

    async def _remove_replica(self, name: str, block: str | None, site: str, why: str) -> None:
        """Owner cleared, then the files deleted: the path of the dealer's deletion requests
        (the transfer service has the inventory delete the replica once its files are gone)."""
        spec = dels.DeletionSpec(0, name, block, site)
        key = f"userdata/{why}/{name}/{block}/{site}"
        reply = await self._inventory(
            InventoryCommand.UPDATE_REPLICAS, dels.owner_cleared(spec), command_id(key, "owner")
        )
        if reply.status != "accepted":
            log.warning("clearing the owner of %s#%s at %s: %s", name, block, site, reply.reason)
            return
        files = tr.DeleteReplicaFiles(
            requests=[
                tr.ReplicaDeletionSpec(
                    dataset=name, block=block, site=site, reference=f"user data {why}"
                )
            ]
        )
        moved = await self.rt._request(
            TransferCommand.DELETE_REPLICAS, files, command_id(key, "files")
        )
        if moved.data.get("status") != "accepted":
            log.warning("deleting %s#%s at %s: %s", name, block, site, moved.data.get("reason"))

    async def carry_out_deletions(self) -> None:
        model = self.rt.readmodel.model
        async with self.rt.pool.acquire() as conn:
            rows = await db.datasets_in(conn, ["deleting"])
        for row in rows:
            name = row["name"]
            sites = ud.replica_sites(model, name)
            if not sites:
                if name in model.datasets:
                    reply = await self._inventory(
                        InventoryCommand.DELETE_DATASETS,
                        inv.DeleteDatasets(names=[name]),
                        command_id("userdata-drop", name, row["updated"].isoformat()),
                    )
                    if reply.status != "accepted":
                        log.warning("deleting dataset %s: %s", name, reply.reason)
                        continue
                async with self.rt.pool.acquire() as conn:
                    await db.drop_dataset(conn, name)
                self.cleaned = {m for m in self.cleaned if m[0] != name}
                continue
            for site in sites:
                mark = (name, "*", site)
                if mark not in self.cleaned:
                    await self._remove_replica(name, None, site, "deletion")
                    self.cleaned.add(mark)

    # ---------------------------------------------------------------------- consolidate

    async def clean_scattered(self) -> None:
        model = self.rt.readmodel.model
        async with self.rt.pool.acquire() as conn:
            rows = await db.consolidating(conn)
        if any(ud.unplaced(model, row["name"], row["home"]) for row in rows):
            await self._another_cycle()
        for row in rows:
            for block, site in ud.scattered(model, row["name"], row["home"]):
                mark = (row["name"], block, site)
                if mark in self.cleaned:
                    continue
                await self._remove_replica(row["name"], block, site, "consolidation")
                self.cleaned.add(mark)

    async def _another_cycle(self) -> None:
        """A dealer cycle places at most one block of a dataset per site (the engine counts
        the dataset as held there once one block is placed), so consolidation asks for
        cycles until every block has its copy at home, spaced to keep the record readable."""
        now = self.rt.clock()
        if now - self.last_cycle < max(10 * self.settings.progress_interval, 3.0):
            return
        self.last_cycle = now
        with contextlib.suppress(CycleBusy):
            await self.rt.submit(requested_by="userdata", comment="user data consolidation")

    async def loop(self) -> None:
        """Follows the inventory: consolidated blocks lose their scattered copies, deleted
        datasets go once their replicas are gone."""
        rm = self.rt.readmodel
        await rm.ready.wait()
        while True:
            with contextlib.suppress(TimeoutError):
                await rm.wait_for_seq(rm.seq + 1, timeout=self.settings.progress_interval)
            try:
                await self.clean_scattered()
                await self.carry_out_deletions()
            except asyncio.CancelledError:
                raise
            except RequestTimeout as exc:
                log.warning("user data clean-up not answered yet: %s", exc)
            except Exception:
                log.exception("user data clean-up failed")
                await asyncio.sleep(self.settings.progress_interval)
            await asyncio.sleep(0.2)
