"""What the inventory is told about a block replica being built, from the queue's counts
and the read model. Pure: the caller reads the counts and sends the commands."""

from __future__ import annotations

from dataclasses import dataclass

from dynamo_common.model.objects import Block, Inventory
from dynamo_transfer.service.sources import block_of


def whole(block: Block | None, bytes_total: int, files_total: int) -> bool:
    """The copied files are the whole block as the inventory knows it now, so the replica
    can be declared complete; a block that changed while its files were copied cannot."""
    return block is not None and (block.size == bytes_total and block.num_files == files_total)


@dataclass(frozen=True, slots=True)
class Progress:
    size: int
    files: int
    news: bool  # False: the inventory's replica already holds this much; nothing to send


def progress(
    model: Inventory, dataset: str, block: str, site: str, bytes_done: int, files_done: int
) -> Progress:
    """The size and file count to report for a partial replica, capped at the block's.
    When the inventory's replica already holds at least that much (it was partial before
    the copies started), there is nothing to send: a report must never make it smaller."""
    found = block_of(model, dataset, block)
    if found is None:
        return Progress(bytes_done, files_done, news=True)
    size, files = min(bytes_done, found.size), min(files_done, found.num_files)
    where = model.sites.get(site)
    current = found.replica_at(where) if where is not None else None
    if current is not None and current.size >= size and current.num_files >= files:
        return Progress(size, files, news=False)
    return Progress(size, files, news=True)
