"""The user-data namespace: which names are a user's, and which lock patterns reach others."""

from __future__ import annotations

from dynamo_common.userdata import dataset_owner, others_reached


def test_a_user_dataset_names_its_owner_and_official_data_names_nobody() -> None:
    assert dataset_owner("/alice/ntuples-v2/USER") == "alice"
    assert dataset_owner("/SingleMuon/Run2017D-v1/AOD") is None
    assert dataset_owner("/alice/USER") is None
    assert dataset_owner("/al ice/x/USER") is None


def test_patterns_that_reach_another_users_data_are_named() -> None:
    existing = ["/bob/ntuples/USER", "/alice/skims/USER", "/SingleMuon/Run2017D-v1/AOD"]
    assert others_reached("/alice/*/USER", "alice", existing) is None
    assert others_reached("/Single*/*/AOD", "alice", existing) is None
    assert others_reached("/bob/ntuples/USER", "alice", existing) == "/bob/ntuples/USER"
    assert others_reached("/b*/*/USER", "alice", existing) == "/bob/ntuples/USER"
    assert others_reached("/*", "alice", existing) == "/<any user>/<any dataset>/USER"
    # A pattern that would reach a user who has no data yet is still refused.
    assert others_reached("/*/*/USER", "alice", []) is not None
