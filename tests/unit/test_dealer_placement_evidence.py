"""A placement of the dealer is over on evidence, never on a grace period: its creation command
was refused, its replica is complete, or the read model shows the answer to that command (has
reached the answer's sequence number) and the replica is not there."""

from __future__ import annotations

from dynamo_common.model.objects import Inventory
from dynamo_dealer.service import monitoring
from tests.unit.dealer.factories import GB, NOW, TB, add_replica, grid

DAY = 86400.0
HOUR = 3600.0
STUCK_AFTER = 5 * DAY
DATASET = "/A/R-v1/AOD"


def _grid(seq: int) -> Inventory:
    inventory = grid({"T2_A": 100 * TB}, datasets=[(DATASET, 100 * GB)])
    inventory.seq = seq
    return inventory


def _placement(
    answered: int | None = None, refusal: str | None = None, block: str | None = None
) -> monitoring.Tracked:
    return monitoring.Tracked(1, DATASET, block, "T2_A", NOW, 0, NOW, answered, refusal)


def test_an_answered_placement_is_in_flight_while_the_read_model_is_behind_the_answer() -> None:
    inventory = _grid(seq=41)
    placement = _placement(answered=42)
    (flying,), over = monitoring.in_flight(inventory, [placement], NOW + 2 * HOUR, STUCK_AFTER)
    assert over == []
    assert (flying.copied, flying.total, flying.stuck) == (0, 100 * GB, False)


def test_an_answered_placement_whose_replica_is_absent_once_the_answer_shows_is_over() -> None:
    for seq in (42, 50):
        inventory = _grid(seq)
        placement = _placement(answered=42)
        flying, over = monitoring.in_flight(inventory, [placement], NOW + 60, STUCK_AFTER)
        assert flying == [] and over == [placement]


def test_a_refused_placement_is_over_at_once_whatever_the_read_model_shows() -> None:
    for answered in (None, 42):
        inventory = _grid(seq=0)
        placement = _placement(answered=answered, refusal="unknown dataset")
        flying, over = monitoring.in_flight(inventory, [placement], NOW, STUCK_AFTER)
        assert flying == [] and over == [placement]


def test_an_unanswered_placement_stays_in_flight_however_long_the_answer_takes() -> None:
    inventory = _grid(seq=1000)
    placement = _placement(answered=None)
    (flying,), over = monitoring.in_flight(inventory, [placement], NOW + 2 * HOUR, STUCK_AFTER)
    assert over == [] and (flying.copied, flying.total, flying.stuck) == (0, 100 * GB, False)
    # Past the window it is still not over, but shown for what it is: stuck.
    (late,), over = monitoring.in_flight(inventory, [placement], NOW + 6 * DAY, STUCK_AFTER)
    assert over == [] and late.stuck


def test_a_present_replica_gives_the_progress_once_answered_and_a_complete_one_is_over() -> None:
    inventory = _grid(seq=42)
    dataset = inventory.datasets[DATASET]
    add_replica(inventory, dataset, inventory.sites["T2_A"], partial=["b0"])
    placement = _placement(answered=42)
    (flying,), over = monitoring.in_flight(inventory, [placement], NOW + DAY, STUCK_AFTER)
    assert over == [] and (flying.copied, flying.total) == (50 * GB, 100 * GB)

    complete = _grid(seq=10)
    add_replica(complete, complete.datasets[DATASET], complete.sites["T2_A"])
    # Complete is complete, even before the read model shows the answer.
    flying, over = monitoring.in_flight(complete, [placement], NOW + DAY, STUCK_AFTER)
    assert flying == [] and over == [placement]


def test_a_block_placement_is_over_when_its_block_replica_is_absent_once_answered() -> None:
    inventory = _grid(seq=42)
    dataset = inventory.datasets[DATASET]
    # The dataset has a replica at the site, without the placed block.
    add_replica(inventory, dataset, inventory.sites["T2_A"], blocks=[])
    waiting = _placement(answered=43, block="b0")
    shown = _placement(answered=42, block="b0")
    flying, over = monitoring.in_flight(inventory, [waiting, shown], NOW + 60, STUCK_AFTER)
    assert [f.tracked for f in flying] == [waiting] and over == [shown]
