"""Attribute providers (locks, popularity, enforcer protection, protected sites) and the
commands a real cycle's decisions become."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dynamo_common.policy.detox import Action
from dynamo_common.policy.enforcer import parse_enforcer_rules
from dynamo_detox.service.commands import (
    Item,
    batches,
    command_id,
    file_deletions,
    owner_updates,
    plan_items,
    still_there,
)
from dynamo_detox.service.engine import Decision, ReplicaDecision
from dynamo_detox.service.locks import Lock, covers, locked_block_replicas
from dynamo_detox.service.popularity import AccessSummary, popularity_tables, usage_rank
from dynamo_detox.service.providers import (
    EnforcerProvider,
    LockProvider,
    PopularityProvider,
    ProtectedSitesProvider,
    fill_attributes,
)
from tests.unit.policy.factories import (
    DAY,
    GB,
    NOW,
    add_dataset,
    add_replica,
    add_site,
    make_inventory,
)

AT = datetime.fromtimestamp(NOW, UTC)


def lock(dataset: str, block: str | None = None, sites: str = "*", **over: object) -> Lock:
    values: dict[str, object] = {
        "id": 1,
        "dataset": dataset,
        "block": block,
        "sites": sites,
        "until": AT + timedelta(days=1),
        "owner": "alice",
        "comment": "",
        "created": AT - timedelta(days=1),
    }
    values.update(over)
    return Lock(**values)  # type: ignore[arg-type]


def grid():  # type: ignore[no-untyped-def]
    inv = make_inventory()
    a = add_site(inv, "T2_US_A")
    b = add_site(inv, "T2_DE_B")
    raw = add_dataset(inv, "/A/Run-v1/RAW", block_sizes=(GB, GB))
    aod = add_dataset(inv, "/A/Run-v1/AOD", block_sizes=(GB,))
    for site in (a, b):
        add_replica(inv, raw, site)
        add_replica(inv, aod, site)
    return inv


# ----------------------------------------------------------------------------------- locks


def _locked(inv, *locks: Lock) -> set[tuple[str, str, str]]:  # type: ignore[no-untyped-def]
    table = locked_block_replicas(inv, locks, AT)
    return {(br.block.dataset.name, br.block.name, br.site.name) for br in table}


def test_a_lock_covers_every_block_of_matching_datasets_at_matching_sites() -> None:
    inv = grid()
    assert _locked(inv, lock("/A/*/RAW", sites="T2_US_*")) == {
        ("/A/Run-v1/RAW", "b0", "T2_US_A"),
        ("/A/Run-v1/RAW", "b1", "T2_US_A"),
    }


def test_a_lock_can_name_blocks_and_literal_names() -> None:
    inv = grid()
    assert _locked(inv, lock("/A/Run-v1/RAW", block="b1", sites="T2_DE_B")) == {
        ("/A/Run-v1/RAW", "b1", "T2_DE_B")
    }
    assert _locked(inv, lock("/A/Run-v1/RAW", block="b?")) == {
        (d, b, s) for d in ("/A/Run-v1/RAW",) for b in ("b0", "b1") for s in ("T2_US_A", "T2_DE_B")
    }
    assert _locked(inv, lock("/No/Such-v1/RAW")) == set()
    assert _locked(inv, lock("/A/*", sites="T1_*")) == set()


def test_expired_and_released_locks_cover_nothing() -> None:
    inv = grid()
    assert _locked(inv, lock("/A/*", until=AT - timedelta(seconds=1))) == set()
    assert _locked(inv, lock("/A/*", released=AT - timedelta(hours=1))) == set()
    assert lock("/A/*").active(AT)


def test_covers() -> None:
    assert covers(lock("/A/*/RAW", sites="T2_*"), "/A/B/RAW", None, "T2_X")
    assert not covers(lock("/A/*/RAW", sites="T2_*"), "/A/B/RAW", None, "T1_X")
    assert covers(lock("/A/*", block="b1"), "/A/B/RAW", "b1", "T2_X")
    assert not covers(lock("/A/*", block="b1"), "/A/B/RAW", "b2", "T2_X")


# ------------------------------------------------------------------------------ popularity


def test_usage_rank_is_idle_days_minus_accesses_per_gb() -> None:
    assert usage_rank(10.0, 0, 5 * GB) == 10.0
    assert usage_rank(10.0, 20, 5 * GB) == 6.0
    # Below 1 GB a dataset counts as 1 GB: a tiny one is not infinitely in demand.
    assert usage_rank(10.0, 3, 1000) == 7.0


def test_popularity_tables() -> None:
    inv = grid()
    raw = inv.datasets["/A/Run-v1/RAW"]
    aod = inv.datasets["/A/Run-v1/AOD"]
    summaries = [
        AccessSummary("/A/Run-v1/RAW", "T2_US_A", NOW - 2 * DAY, 10),
        AccessSummary("/A/Run-v1/RAW", "T2_DE_B", NOW - 1 * DAY, 4),
        AccessSummary("/A/Run-v1/RAW", "T2_XX_Gone", NOW - 3 * DAY, 5),
        AccessSummary("/No/Such-v1/RAW", "T2_US_A", NOW, 1),
    ]
    tables = popularity_tables(inv, summaries, NOW)
    assert tables.last_access == {raw: NOW - DAY}
    assert tables.num_access == {raw.replicas["T2_US_A"]: 10, raw.replicas["T2_DE_B"]: 4}
    # 19 accesses of a 2 GB dataset, idle one day.
    assert tables.usage_rank[raw] == pytest.approx(1.0 - 19 / 2)
    # Never accessed: idle since its last update.
    assert tables.usage_rank[aod] == pytest.approx((NOW - aod.last_update) / DAY)


# ------------------------------------------------------------------------------- providers


def test_fill_attributes_runs_every_provider_into_its_tables() -> None:
    inv = grid()
    raw = inv.datasets["/A/Run-v1/RAW"]
    enforcer = parse_enforcer_rules(
        '{"partition": "Physics", "default_destination_group": "AnalysisOps", "rules": {"r": '
        '{"replicas": ["dataset.name == /*/*/RAW"], "num_copies": 1, '
        '"destinations": ["site.name == T2_DE_*"], "protect": true}}}'
    )
    attributes = fill_attributes(
        inv,
        [
            LockProvider([lock("/A/*/AOD", sites="T2_US_A")]),
            PopularityProvider([AccessSummary("/A/Run-v1/RAW", "T2_US_A", NOW, 3)]),
            ProtectedSitesProvider(["T2_DE_*"]),
            EnforcerProvider([enforcer]),
        ],
        NOW,
    )
    assert set(attributes) == {
        "blockreplica.is_locked",
        "dataset.last_access",
        "replica.num_access",
        "dataset.usage_rank",
        "dataset.on_protected_site",
        "replica.enforcer_protected",
    }
    aod = inv.datasets["/A/Run-v1/AOD"]
    assert list(attributes["blockreplica.is_locked"]) == [
        aod.replicas["T2_US_A"].block_replicas["b0"]
    ]
    assert attributes["replica.num_access"] == {raw.replicas["T2_US_A"]: 3}
    assert attributes["dataset.on_protected_site"] == {raw: True, aod: True}
    assert attributes["replica.enforcer_protected"] == {raw.replicas["T2_DE_B"]: True}


def test_a_provider_for_a_table_no_variable_reads_is_refused() -> None:
    class Stray:
        name = "stray"
        provides = frozenset({"dataset.colour"})

        def fill(self, inventory: object, attributes: object, now: float) -> None: ...

    with pytest.raises(ValueError, match=r"dataset\.colour"):
        fill_attributes(make_inventory(), [Stray()], NOW)  # type: ignore[list-item]


# -------------------------------------------------------------------------------- commands


def decision(
    dataset: str,
    site: str,
    blocks: tuple[str, ...] | None,
    kind: Decision = Decision.DELETE,
    handed_to: str | None = None,
) -> ReplicaDecision:
    return ReplicaDecision(dataset, site, blocks, kind, Action.DISMISS, 5, GB, handed_to)


def test_plan_merges_parts_and_keeps_hand_offs_apart() -> None:
    inv = grid()
    items = plan_items(
        [
            decision("/A/Run-v1/AOD", "T2_US_A", None),
            # Two parts deleted in different iterations: together the whole replica.
            decision("/A/Run-v1/RAW", "T2_US_A", ("b0",)),
            decision("/A/Run-v1/RAW", "T2_US_A", ("b1",)),
            decision("/A/Run-v1/RAW", "T2_DE_B", ("b1",)),
            decision("/A/Run-v1/RAW", "T2_DE_B", ("b0",), Decision.KEEP, handed_to="DataOps"),
            decision("/A/Run-v1/AOD", "T2_DE_B", None, Decision.KEEP),
            decision("/A/Run-v1/AOD", "T2_DE_B", None, Decision.PROTECT),
        ],
        inv,
    )
    assert items == [
        Item("/A/Run-v1/AOD", "T2_US_A", None, GB),
        Item("/A/Run-v1/RAW", "T2_DE_B", "b1", GB),
        Item("/A/Run-v1/RAW", "T2_US_A", None, 2 * GB),
        Item("/A/Run-v1/RAW", "T2_DE_B", "b0", 0, "DataOps"),
    ]
    update = owner_updates(items)
    assert [(u.dataset, u.site, u.group) for u in update.dataset_replicas] == [
        ("/A/Run-v1/AOD", "T2_US_A", "None"),
        ("/A/Run-v1/RAW", "T2_US_A", "None"),
    ]
    assert [(u.block, u.site, u.group) for u in update.block_replicas] == [
        ("b1", "T2_DE_B", "None"),
        ("b0", "T2_DE_B", "DataOps"),
    ]
    deletion = file_deletions(items, "detox cycle 7")
    assert deletion is not None
    assert [(r.dataset, r.block, r.site, r.reference) for r in deletion.requests] == [
        ("/A/Run-v1/AOD", None, "T2_US_A", "detox cycle 7"),
        ("/A/Run-v1/RAW", "b1", "T2_DE_B", "detox cycle 7"),
        ("/A/Run-v1/RAW", None, "T2_US_A", "detox cycle 7"),
    ]
    assert file_deletions(items[3:], "x") is None


def test_items_no_longer_in_the_read_model_are_left_out() -> None:
    inv = grid()
    items = [
        Item("/A/Run-v1/AOD", "T2_US_A", None, GB),
        Item("/A/Run-v1/AOD", "T2_XX_Gone", None, GB),
        Item("/A/Run-v1/RAW", "T2_US_A", "b7", GB),
        Item("/No/Such-v1/RAW", "T2_US_A", None, GB),
    ]
    present, gone = still_there(items, inv)
    assert present == items[:1] and gone == items[1:]


def test_batches_and_command_ids_are_stable() -> None:
    items = [Item(f"/D{i}/R-v1/AOD", "T2_A", None, 1) for i in range(12)]
    assert [len(b) for b in batches(items, 5)] == [5, 5, 2]
    assert command_id(3, 0) == command_id(3, 0) != command_id(3, 1)
