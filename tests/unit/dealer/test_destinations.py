"""Destination choice: open destinations drawn in proportion to free space, quotas and the
target occupancy never exceeded, per-cycle caps in total and per site, pending volume under
its fraction of the quota, placement rules veto, and sites that are not targets never
chosen."""

from __future__ import annotations

import random
from collections import Counter

from dynamo_common.messages.types import SiteStatus
from dynamo_dealer.service.placement import parse_vetoes
from dynamo_dealer.service.proposals import Decision, Proposal
from dynamo_dealer.service.sites import choose
from tests.unit.dealer.factories import GB, TB, add_dataset, add_replica, grid, run


def copy(dataset: str, site: str | None = None, priority: float = 3.0) -> Proposal:
    return Proposal(
        plugin="test",
        dataset=dataset,
        group="AnalysisOps",
        site=site,
        priority=priority,
        reference=dataset,
    )


def test_draws_follow_free_space() -> None:
    rng = random.Random(7)
    counts = Counter(choose([("A", 30.0), ("B", 10.0), ("C", 0.0)], rng) for _ in range(20_000))
    assert counts["C"] == 0
    assert abs(counts["A"] / 20_000 - 0.75) < 0.02
    assert abs(counts["B"] / 20_000 - 0.25) < 0.02


def test_open_destinations_go_mostly_where_there_is_most_room() -> None:
    datasets = [(f"/D{i:03d}/R-v1/AOD", GB) for i in range(400)]
    inventory = grid({"T2_BIG": 900 * TB, "T2_SMALL": 100 * TB}, datasets=datasets)
    result = run(inventory, [copy(name) for name, _ in datasets])
    sites = Counter(p.site for p in result.placements)
    assert sites["T2_BIG"] + sites["T2_SMALL"] == 400
    # Free space 810 TB against 90 TB: about 9 in 10 go to the big site.
    assert 0.84 < sites["T2_BIG"] / 400 < 0.96


def test_the_target_occupancy_is_never_exceeded_and_full_sites_get_nothing() -> None:
    datasets = [(f"/D{i:03d}/R-v1/AOD", 10 * TB) for i in range(30)]
    inventory = grid({"T2_A": 100 * TB, "T2_B": 50 * TB, "T2_FULL": 100 * TB}, datasets=datasets)
    filler = add_dataset(inventory, "/Filler/R-v1/AOD", block_sizes=(95 * TB,))
    add_replica(inventory, filler, inventory.sites["T2_FULL"])
    result = run(inventory, [copy(name) for name, _ in datasets], target=0.9)
    placed = Counter()
    for p in result.placements:
        placed[p.site] += p.volume
    assert placed == {"T2_A": 90 * TB, "T2_B": 40 * TB}
    refused = [o for o in result.outcomes if o.decision is not Decision.ACCEPTED]
    assert len(refused) == 30 - 13
    assert all(o.reason.startswith("no suitable destination") for o in refused)


def test_per_cycle_caps_hold_in_total_and_per_site() -> None:
    datasets = [(f"/D{i:03d}/R-v1/AOD", TB) for i in range(20)]
    inventory = grid({"T2_A": 1000 * TB, "T2_B": 1000 * TB}, datasets=datasets)
    result = run(inventory, [copy(n) for n, _ in datasets], max_site_volume=3 * TB)
    assert Counter(p.site for p in result.placements) == {"T2_A": 3, "T2_B": 3}
    assert {o.decision for o in result.outcomes} == {Decision.ACCEPTED, Decision.DEFERRED}
    capped = run(inventory, [copy(n) for n, _ in datasets], max_cycle_volume=5 * TB)
    assert capped.volume == 5 * TB
    deferred = [o for o in capped.outcomes if o.decision is Decision.DEFERRED]
    assert len(deferred) == 15
    assert {o.reason for o in deferred} == {"volume cap of this cycle reached"}


def test_pending_volume_stays_under_its_fraction_of_the_quota() -> None:
    datasets = [(f"/D{i:03d}/R-v1/AOD", 4 * TB) for i in range(5)]
    inventory = grid({"T2_A": 100 * TB}, datasets=datasets)
    result = run(inventory, [copy(n) for n, _ in datasets], pending=0.1)
    assert sum(p.volume for p in result.placements) == 8 * TB


def test_a_placement_rule_vetoes_fixed_and_open_destinations() -> None:
    inventory = grid(
        {"T2_US_A": 100 * TB, "T2_DE_B": 100 * TB},
        datasets=[("/HIMinBias/HIRun2024-v1/AOD", TB), ("/PP/Run2024-v1/AOD", TB)],
    )
    vetoes = parse_vetoes({"no-HI-in-US": "dataset.name == /HI*/*/* and site.name == T2_US_*"})
    fixed = run(inventory, [copy("/HIMinBias/HIRun2024-v1/AOD", "T2_US_A")], vetoes=vetoes)
    (outcome,) = fixed.outcomes
    assert outcome.decision is Decision.REJECTED
    assert outcome.reason.startswith("vetoed by placement rule no-HI-in-US")
    for seed in range(10):
        open_ = run(
            inventory,
            [copy("/HIMinBias/HIRun2024-v1/AOD"), copy("/PP/Run2024-v1/AOD")],
            vetoes=vetoes,
            seed=seed,
        )
        sites = {p.dataset: p.site for p in open_.placements}
        assert sites["/HIMinBias/HIRun2024-v1/AOD"] == "T2_DE_B"


def test_only_ready_disk_sites_the_configuration_allows_are_destinations() -> None:
    inventory = grid(
        {"T2_OK": 100 * TB, "T2_DOWN": 100 * TB, "T2_GONE": 100 * TB, "T3_OTHER": 100 * TB},
        datasets=[("/A/R-v1/AOD", TB)],
        statuses={"T2_DOWN": SiteStatus.WAITROOM, "T2_GONE": SiteStatus.MORGUE},
    )
    for seed in range(10):
        result = run(inventory, [copy("/A/R-v1/AOD")], seed=seed)
        assert [p.site for p in result.placements] == ["T2_OK"]
    (refused,) = run(inventory, [copy("/A/R-v1/AOD", "T2_GONE")]).outcomes
    assert (refused.decision, refused.reason) == (Decision.REJECTED, "T2_GONE is in morgue")
    (other,) = run(inventory, [copy("/A/R-v1/AOD", "T3_OTHER")]).outcomes
    assert other.reason == "T3_OTHER is not a target site of the dealer"


def _site_at_88_percent() -> tuple[object, str]:
    inventory = grid({"T2_A": 100 * TB}, datasets=[("/Wanted/R-v1/AOD", 5 * TB)])
    filler = add_dataset(inventory, "/Filler/R-v1/AOD", block_sizes=(88 * TB,))
    add_replica(inventory, filler, inventory.sites["T2_A"])
    return inventory, "/Wanted/R-v1/AOD"


def test_a_request_may_fill_its_site_up_to_the_request_ceiling_but_no_further() -> None:
    inventory, name = _site_at_88_percent()
    request = Proposal(
        plugin="requests",
        dataset=name,
        group="AnalysisOps",
        site="T2_A",
        priority=5,
        reference="1",
    )
    # 88% + 5% is above the 90% target: without a ceiling the request waits for room.
    (waiting,) = run(inventory, [request], target=0.9).outcomes  # type: ignore[arg-type]
    assert waiting.decision is Decision.REJECTED
    assert "above the target 0.9" in waiting.reason
    (landed,) = run(inventory, [request], target=0.9, request_ceiling=0.95).outcomes  # type: ignore[arg-type]
    assert landed.decision is Decision.ACCEPTED and landed.site == "T2_A"
    (over,) = run(inventory, [request], target=0.9, request_ceiling=0.92).outcomes  # type: ignore[arg-type]
    assert over.decision is Decision.REJECTED
    assert "above the request ceiling 0.92" in over.reason


def test_only_explicit_requests_get_the_request_ceiling() -> None:
    inventory, name = _site_at_88_percent()
    other = copy(name, site="T2_A", priority=5)
    (outcome,) = run(inventory, [other], target=0.9, request_ceiling=0.95).outcomes  # type: ignore[arg-type]
    assert outcome.decision is Decision.REJECTED
    assert "above the target 0.9" in outcome.reason


def test_a_request_ceiling_below_the_target_is_refused_at_start() -> None:
    import pytest
    from pydantic import ValidationError

    from dynamo_dealer.settings import DealerSettings

    with pytest.raises(ValidationError, match="below target_occupancy"):
        DealerSettings(target_occupancy=0.9, request_occupancy=0.85)
    assert DealerSettings(target_occupancy=0.9, request_occupancy=0.95).request_occupancy == 0.95


def test_the_service_hands_its_request_ceiling_to_the_engine() -> None:
    from dynamo_dealer.runtime import build_config
    from dynamo_dealer.settings import DealerSettings

    settings = DealerSettings(target_occupancy=0.9, request_occupancy=0.97)
    rules = build_config(settings, [], []).engine.sites
    assert (rules.target_occupancy, rules.request_occupancy) == (0.9, 0.97)
    assert build_config(DealerSettings(), [], []).engine.sites.request_occupancy is None
