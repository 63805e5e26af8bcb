"""A small in-memory inventory for the consistency unit tests, built through the same event
application every follower uses."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

from dynamo_common.messages import inventory as inv
from dynamo_common.messages.registry import InventoryEvent
from dynamo_common.model.apply import apply_event
from dynamo_common.model.objects import Inventory

DAY = 86400.0
NOW = 1_800_000_000.0  # the checks' "now" in these tests
LONG_AGO = NOW - 30 * DAY


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


class Model:
    def __init__(self) -> None:
        self.inventory = Inventory()
        self._ids = itertools.count(1)
        self.group("AnalysisOps")
        self.group("DataOps")

    def site(
        self, name: str, storage_type: str = "disk", status: str = "ready", prefix: str = ""
    ) -> Model:
        protocols = [
            inv.Protocol(
                name="root",
                rules=[
                    inv.PfnRule(
                        match="/store/(.*)",
                        result=prefix or f"root://{name.lower()}.example:1094//data/store/$1",
                    )
                ],
            )
        ]
        state = inv.SiteState(
            id=next(self._ids),
            name=name,
            storage_type=storage_type,  # type: ignore[arg-type]
            status=status,  # type: ignore[arg-type]
            protocols=protocols,
        )
        apply_event(self.inventory, InventoryEvent.SITE_CREATED, inv.SitesChanged(sites=[state]))
        return self

    def group(self, name: str) -> Model:
        apply_event(
            self.inventory,
            InventoryEvent.GROUP_CREATED,
            inv.GroupsChanged(groups=[inv.GroupState(id=next(self._ids), name=name)]),
        )
        return self

    def block(
        self,
        dataset: str,
        block: str,
        *,
        size: int = 3000,
        num_files: int = 3,
        updated: float = LONG_AGO,
    ) -> Model:
        if dataset not in self.inventory.datasets:
            apply_event(
                self.inventory,
                InventoryEvent.DATASET_CREATED,
                inv.DatasetsChanged(
                    datasets=[
                        inv.DatasetState(
                            id=next(self._ids), name=dataset, last_update=_dt(LONG_AGO)
                        )
                    ]
                ),
            )
        state = inv.BlockState(
            id=next(self._ids),
            dataset=dataset,
            name=block,
            size=size,
            num_files=num_files,
            is_open=False,
            last_update=_dt(updated),
        )
        apply_event(self.inventory, InventoryEvent.BLOCK_CREATED, inv.BlocksChanged(blocks=[state]))
        return self

    def replica(
        self,
        dataset: str,
        block: str,
        site: str,
        *,
        group: str = "AnalysisOps",
        size: int | None = None,
        num_files: int | None = None,
        updated: float = LONG_AGO,
    ) -> Model:
        b = self.inventory.datasets[dataset].blocks[block]
        state = inv.BlockReplicaState(
            dataset=dataset,
            block=block,
            site=site,
            group=group,
            size=b.size if size is None else size,
            num_files=b.num_files if num_files is None else num_files,
            last_update=_dt(updated),
        )
        apply_event(
            self.inventory,
            InventoryEvent.REPLICA_CREATED,
            inv.ReplicasChanged(block_replicas=[state]),
        )
        return self

    def delete_replica(self, dataset: str, block: str, site: str) -> Model:
        apply_event(
            self.inventory,
            InventoryEvent.REPLICA_DELETED,
            inv.ReplicasDeleted(
                block_replicas=[inv.BlockReplicaKey(dataset=dataset, block=block, site=site)]
            ),
        )
        return self
