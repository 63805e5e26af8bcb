"""Commands in (every instance, leader or not): a request is checked against the read model,
the block replicas it builds are created at the inventory, and its files are queued in one
transaction with the command's reply."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pydantic import BaseModel, ValidationError

from dynamo_common.messages import inventory as inv
from dynamo_common.messages import transfer as tr
from dynamo_common.messages.envelope import Envelope
from dynamo_common.messages.registry import (
    InventoryCommand,
    TransferCommand,
    UnknownMessageType,
    command_model,
)
from dynamo_common.model.objects import Inventory
from dynamo_transfer.inventory import command_id
from dynamo_transfer.repository import store
from dynamo_transfer.runtime.support import now_utc
from dynamo_transfer.service import intake
from dynamo_transfer.service.intake import FileInfo, NewTask, ReplicaTarget, RequestRejected
from dynamo_transfer.service.sources import block_of
from dynamo_transfer.service.states import Kind

if TYPE_CHECKING:
    from dynamo_transfer.runtime.core import TransferRuntime

log = logging.getLogger("dynamo.transfer")

_COMMANDS = frozenset(c.value for c in TransferCommand)


async def handle_command(rt: TransferRuntime, envelope: Envelope) -> tr.TransferCommandReply:
    """Accept or refuse one command, exactly once: a command seen before gets the reply it
    got then."""
    async with rt.pool.acquire() as conn:
        recorded = await store.recorded_reply(conn, envelope.id)
    if recorded is not None:
        return tr.TransferCommandReply.model_validate_json(recorded)
    if envelope.type not in _COMMANDS:
        return await _reject(rt, envelope, f"not a transfer command: {envelope.type!r}")
    try:
        command = command_model(envelope.type).model_validate(envelope.data)
    except UnknownMessageType as exc:
        return await _reject(rt, envelope, str(exc))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return await _reject(rt, envelope, f"the command is malformed: {where}: {first['msg']}")
    try:
        targets, new = await _plan_with_fresh_model(rt, envelope.type, command)
        await _create_inventory_replicas(rt, envelope.id, targets)
    except RequestRejected as exc:
        return await _reject(rt, envelope, exc.reason)
    reply = await _enqueue(rt, envelope, targets, new)
    rt.schedule_wakeup.set()
    return reply


async def _plan_with_fresh_model(
    rt: TransferRuntime, command_type: str, command: BaseModel
) -> tuple[list[ReplicaTarget], list[NewTask]]:
    try:
        return await _plan(rt, command_type, command)
    except RequestRejected:
        # The caller may have just registered what it names (read-your-writes): if the
        # inventory is ahead of our copy, catch up and look again before refusing.
        seq = rt.readmodel.seq
        latest = await rt.inventory.last_seq(seq)
        if latest <= seq:
            raise
        await rt.readmodel.wait_for_seq(latest, timeout=30.0)
        return await _plan(rt, command_type, command)


async def _plan(
    rt: TransferRuntime, command_type: str, command: BaseModel
) -> tuple[list[ReplicaTarget], list[NewTask]]:
    model = rt.readmodel.model
    pref = rt.preference
    if isinstance(command, tr.TransferReplicas):
        targets = intake.plan_replica_transfers(model, command, pref)
        complete = [t.key for t in targets if t.complete]
        if complete:
            async with rt.pool.acquire() as conn:
                deleting = await store.active_rows(conn, Kind.DELETION, complete)
            targets = intake.still_needed(targets, deleting)
        await _fill_files(rt, model, targets)
        return targets, intake.expand(targets)
    if isinstance(command, tr.DeleteReplicaFiles):
        targets = intake.plan_replica_deletions(model, command, pref)
        await _fill_files(rt, model, targets)
        return targets, intake.expand(targets)
    if isinstance(command, tr.TransferFiles):
        return [], await _file_transfers(rt, model, command)
    if isinstance(command, tr.DeleteFiles):
        return [], intake.plan_file_deletions(model, command, pref, rt.pfns)
    raise RequestRejected(f"not a transfer command: {command_type!r}")


async def _file_transfers(
    rt: TransferRuntime, model: Inventory, command: tr.TransferFiles
) -> list[NewTask]:
    pref = rt.preference
    sites = intake.check_file_sites(model, (f.site for f in command.files), pref)
    # Sizes and checksums come from the inventory's listing, fetched once per block.
    catalogue: dict[tuple[str, str], dict[str, FileInfo]] = {}
    tasks: list[NewTask] = []
    for spec in command.files:
        intake.check_block(model, spec.dataset, spec.block)
        key = (spec.dataset, spec.block)
        if key not in catalogue:
            files = await rt.inventory.block_files(*key)
            catalogue[key] = {f.lfn: f for f in files}
        info = catalogue[key].get(spec.lfn)
        if info is None:
            raise RequestRejected(
                f"LFN {spec.lfn} is not a file of block {spec.dataset}#{spec.block}"
            )
        intake.check_mappings(sites[spec.site], [spec.lfn], pref, rt.pfns)
        tasks.append(
            NewTask(
                kind=Kind.TRANSFER,
                lfn=spec.lfn,
                site=spec.site,
                priority=spec.priority,
                dataset=spec.dataset,
                block=spec.block,
                size=info.size,
                adler32=info.adler32,
            )
        )
    return tasks


async def _fill_files(rt: TransferRuntime, model: Inventory, targets: list[ReplicaTarget]) -> None:
    for target in targets:
        key = target.key
        files = await rt.inventory.block_files(key.dataset, key.block)
        intake.check_listing(block_of(model, key.dataset, key.block), key, files)
        intake.check_mappings(model.sites[key.site], (f.lfn for f in files), rt.preference, rt.pfns)
        target.files = files


async def _create_inventory_replicas(
    rt: TransferRuntime, cid: str, targets: Sequence[ReplicaTarget]
) -> None:
    """Tell the inventory about the block replicas about to be built (empty), before any
    file is queued for them."""
    missing = [t for t in targets if t.key.kind is Kind.TRANSFER and not t.exists]
    if not missing:
        return

    def spec(t: ReplicaTarget) -> inv.BlockReplicaSpec:
        return inv.BlockReplicaSpec(
            dataset=t.key.dataset,
            block=t.key.block,
            site=t.key.site,
            group=t.group,
            size=0,
            num_files=0,
        )

    reply = await rt.inventory.command(
        InventoryCommand.CREATE_REPLICAS,
        inv.CreateReplicas(block_replicas=[spec(t) for t in missing]),
        command_id(cid, "create"),
    )
    if reply.status == "accepted":
        return
    # One of them exists after all (our copy of the inventory lagged): create one at a
    # time, so that the others are not refused with it.
    for t in missing:
        reply = await rt.inventory.command(
            InventoryCommand.CREATE_REPLICAS,
            inv.CreateReplicas(block_replicas=[spec(t)]),
            command_id(cid, "create", t.key.dataset, t.key.block, t.key.site),
        )
        if reply.status == "rejected" and "already has a replica" not in (reply.reason or ""):
            raise RequestRejected(
                f"the inventory refused the replica of {t.key.dataset}#{t.key.block} at "
                f"{t.key.site}: {reply.reason}"
            )


async def _enqueue(
    rt: TransferRuntime,
    envelope: Envelope,
    targets: Sequence[ReplicaTarget],
    new: Sequence[NewTask],
) -> tr.TransferCommandReply:
    now = now_utc()
    pairs = sorted({(t.lfn, t.site) for t in new})
    async with rt.pool.acquire() as conn, conn.transaction():
        await store.lock_intake(conn)
        existing = await store.existing_tasks(conn, pairs)
        plan = intake.reconcile(new, existing)
        row_ids = await store.ensure_replica_rows(conn, targets, now)
        inserted = await store.insert_tasks(conn, plan.insert, row_ids, envelope.id, now)
        await store.adopt_tasks(conn, plan.adopt, row_ids)
        kind = new[0].kind.value if new else "request"
        cancelled = await store.cancel_tasks(
            conn, plan.cancel, f"cancelled by a later {kind} request ({envelope.id})", now
        )
        reply = tr.TransferCommandReply(
            command_id=envelope.id, status="accepted", tasks=inserted, cancelled=cancelled
        )
        await store.record_command(conn, envelope.id, envelope.type, now, reply.model_dump_json())
    log.info(
        "command accepted",
        extra={"command_id": envelope.id, "tasks": inserted, "cancelled": cancelled},
    )
    rt.report_wakeup.set()
    return reply


async def _reject(rt: TransferRuntime, envelope: Envelope, reason: str) -> tr.TransferCommandReply:
    reply = tr.TransferCommandReply(command_id=envelope.id, status="rejected", reason=reason)
    async with rt.pool.acquire() as conn:
        await store.record_command(
            conn, envelope.id, envelope.type, now_utc(), reply.model_dump_json()
        )
    log.info("command rejected", extra={"command_id": envelope.id, "reason": reason})
    return reply
