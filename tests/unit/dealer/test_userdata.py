"""The rules of user data: namespaces, who may act, blocks, quotas, consolidation."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import BaseModel

from dynamo_common.messages import inventory as inv
from dynamo_common.model.apply import apply_event
from dynamo_common.model.objects import Inventory
from dynamo_dealer.service import userdata as ud

NOW = datetime(2026, 11, 22, tzinfo=UTC)
DS = "/alice/ana/USER"


def _files(n: int, start: int = 0) -> list[ud.NewFile]:
    return [
        ud.NewFile(f"/store/user/alice/f{i}.root", 10, "0000000a") for i in range(start, start + n)
    ]


@pytest.mark.parametrize(
    "name",
    ["/alice/ana/AOD", "/alice/ana/USER/x", "alice/ana/USER", "//ana/USER", "/al ice/a/USER"],
)
def test_a_dataset_outside_the_user_naming_is_refused_with_the_rule(name: str) -> None:
    with pytest.raises(ud.Refused) as refused:
        ud.owner_of(name)
    assert refused.value.status == 422


def test_the_owner_is_the_first_part_of_the_name() -> None:
    assert ud.owner_of("/alice/ana-v2/USER") == "alice"


@pytest.mark.parametrize(
    "lfn",
    [
        "/store/user/bob/f.root",
        "/store/user/alicex/f.root",
        "/store/data/f.root",
        "/store/user/alice/",
    ],
)
def test_an_lfn_outside_the_users_namespace_is_refused(lfn: str) -> None:
    with pytest.raises(ud.Refused, match="outside the namespace /store/user/alice/"):
        ud.check_lfns([lfn], "alice", "/store/user")


def test_an_lfn_listed_twice_is_refused() -> None:
    lfn = "/store/user/alice/a.root"
    with pytest.raises(ud.Refused, match="listed twice"):
        ud.check_lfns([lfn, lfn], "alice", "/store/user")


def test_only_the_owner_or_an_admin_may_act() -> None:
    ud.may_act("alice", "alice", admin=False)
    ud.may_act("carol", "alice", admin=True)
    with pytest.raises(ud.Refused) as refused:
        ud.may_act("bob", "alice", admin=False)
    assert refused.value.status == 403


def test_files_fill_the_open_block_then_new_ones_each_closed_at_the_limit() -> None:
    plans = ud.assign(_files(5), ud.OpenBlock("u000003", 2), next_index=4, max_files=3)
    assert [(p.name, p.new, len(p.files), p.close) for p in plans] == [
        ("u000003", False, 1, True),
        ("u000004", True, 3, True),
        ("u000005", True, 1, False),
    ]


def test_without_an_open_block_the_first_file_opens_one() -> None:
    plans = ud.assign(_files(1), None, next_index=1, max_files=100)
    assert [(p.name, p.new, p.close) for p in plans] == [("u000001", True, False)]


def test_a_full_open_block_is_not_filled_further() -> None:
    plans = ud.assign(_files(1), ud.OpenBlock("u000001", 2), next_index=2, max_files=2)
    assert [p.name for p in plans] == ["u000002"]


def test_a_quota_refusal_carries_the_numbers() -> None:
    assert ud.over_quota("user quota of alice", 5, 5, 10) is None
    refused = ud.over_quota("user quota of alice", 6, 5, 10)
    assert refused is not None
    assert refused.numbers == {"used": 6, "asked": 5, "quota": 10}
    assert "6 bytes used + 5 asked > quota 10" in str(refused)


def _inventory() -> Inventory:
    model = Inventory()
    events: list[tuple[str, BaseModel]] = [
        (
            "inventory.site.created.v1",
            inv.SitesChanged(
                sites=[inv.SiteState(id=i, name=n) for i, n in ((1, "T2_A"), (2, "T2_B"))]
            ),
        ),
        ("inventory.group.created.v1", inv.GroupsChanged(groups=[inv.GroupState(id=1, name="U")])),
        (
            "inventory.dataset.created.v1",
            inv.DatasetsChanged(datasets=[inv.DatasetState(id=1, name=DS, last_update=NOW)]),
        ),
        (
            "inventory.block.created.v1",
            inv.BlocksChanged(
                blocks=[
                    inv.BlockState(
                        id=i, dataset=DS, name=n, size=100, num_files=2, is_open=o, last_update=NOW
                    )
                    for i, n, o in (
                        (1, "u000001", False),
                        (2, "u000002", False),
                        (3, "u000003", True),
                    )
                ]
            ),
        ),
    ]
    replicas = [
        ("u000001", "T2_A", 100, "U"),
        ("u000001", "T2_B", 100, "U"),  # consolidated: T2_A's copy goes
        ("u000002", "T2_A", 100, "U"),
        ("u000002", "T2_B", 40, "U"),  # in flight: T2_A's copy stays
        ("u000003", "T2_A", 100, "U"),
        ("u000003", "T2_B", 100, "U"),  # open: stays until production is complete
    ]
    events.append(
        (
            "inventory.replica.created.v1",
            inv.ReplicasChanged(
                dataset_replicas=[
                    inv.DatasetReplicaState(dataset=DS, site=s, group="U", last_update=NOW)
                    for s in ("T2_A", "T2_B")
                ],
                block_replicas=[
                    inv.BlockReplicaState(
                        dataset=DS,
                        block=b,
                        site=s,
                        group=g,
                        size=size,
                        num_files=2,
                        last_update=NOW,
                    )
                    for b, s, size, g in replicas
                ],
            ),
        )
    )
    for kind, body in events:
        apply_event(model, kind, body)
    return model


def test_only_closed_blocks_complete_at_home_lose_their_scattered_copies() -> None:
    model = _inventory()
    assert ud.scattered(model, DS, "T2_B") == [("u000001", "T2_A")]
    assert ud.scattered(model, DS, "T2_A") == [
        ("u000001", "T2_B"),
        ("u000002", "T2_B"),
    ]
    assert ud.scattered(model, "/nobody/x/USER", "T2_B") == []


def test_the_missing_volume_at_a_site_counts_what_is_not_there_yet() -> None:
    model = _inventory()
    assert ud.missing_at(model, DS, "T2_B") == 60
    assert ud.missing_at(model, DS, "T2_A") == 0
    assert ud.unplaced(model, DS, "T2_B") == []
