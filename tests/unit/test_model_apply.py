"""Applying events: the JSON fast path for replica events and the validated path agree."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dynamo_common.messages import inventory as inv
from dynamo_common.messages.registry import InventoryEvent as E
from dynamo_common.model.apply import ApplyError, apply_event
from dynamo_common.model.objects import Inventory
from dynamo_common.model.snapshot import dump_lines

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def _grid() -> Inventory:
    model = Inventory()
    apply_event(model, E.SITE_CREATED, inv.SitesChanged(sites=[inv.SiteState(id=1, name="T2_A")]))
    apply_event(model, E.GROUP_CREATED, inv.GroupsChanged(groups=[inv.GroupState(id=1, name="G")]))
    apply_event(
        model,
        E.DATASET_CREATED,
        inv.DatasetsChanged(datasets=[inv.DatasetState(id=1, name="/A/B/C", last_update=NOW)]),
    )
    apply_event(
        model,
        E.BLOCK_CREATED,
        inv.BlocksChanged(
            blocks=[
                inv.BlockState(
                    id=1, dataset="/A/B/C", name="b1", size=10, num_files=2, last_update=NOW
                )
            ]
        ),
    )
    return model


CHANGE = inv.ReplicasChanged(
    dataset_replicas=[
        inv.DatasetReplicaState(
            dataset="/A/B/C", site="T2_A", group="G", growing=True, last_update=NOW
        )
    ],
    block_replicas=[
        inv.BlockReplicaState(
            dataset="/A/B/C",
            block="b1",
            site="T2_A",
            group="G",
            size=4,
            num_files=1,
            last_update=NOW,
        )
    ],
)


def test_replica_event_from_json_equals_the_validated_model_path() -> None:
    via_model, via_json = _grid(), _grid()
    apply_event(via_model, E.REPLICA_CREATED, CHANGE)
    apply_event(via_json, E.REPLICA_CREATED, CHANGE.model_dump(mode="json"))
    assert list(dump_lines(via_model)) == list(dump_lines(via_json))
    replica = via_json.datasets["/A/B/C"].replicas["T2_A"].block_replicas["b1"]
    assert (replica.size, replica.group.name, replica.is_complete) == (4, "G", False)


def test_applying_the_same_replica_event_twice_changes_nothing() -> None:
    model = _grid()
    apply_event(model, E.REPLICA_CREATED, CHANGE.model_dump(mode="json"))
    once = list(dump_lines(model))
    apply_event(model, E.REPLICA_CREATED, CHANGE.model_dump(mode="json"))
    assert list(dump_lines(model)) == once


def test_malformed_replica_event_raises_apply_error_so_the_follower_resyncs() -> None:
    model = _grid()
    with pytest.raises(ApplyError):
        apply_event(model, E.REPLICA_CREATED, {"block_replicas": [{"dataset": "/A/B/C"}]})


def test_replica_of_an_unknown_block_raises_apply_error() -> None:
    model = _grid()
    data = CHANGE.model_dump(mode="json")
    data["block_replicas"][0]["block"] = "nope"
    with pytest.raises(ApplyError):
        apply_event(model, E.REPLICA_CREATED, data)
