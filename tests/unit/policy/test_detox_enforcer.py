"""Enforcer rule files: the schema, condition errors located by rule and list index with their
line and column in the JSON, and the evaluation detox reads protection from."""

from __future__ import annotations

import json

import pytest

from dynamo_common.messages.types import StorageType
from dynamo_common.policy import PolicyErrors
from dynamo_common.policy.enforcer import (
    EnforcerFile,
    evaluate_enforcer,
    parse_enforcer_rules,
    protected_replicas,
)
from tests.unit.policy.factories import NOW, add_dataset, add_replica, add_site, make_inventory

PAGE_RULES = """\
{"partition": "Physics", "default_destination_group": "AnalysisOps",
 "rules": {"us_miniaod": {
    "replicas": ["dataset.name == /*/*/MINIAOD*"],
    "num_copies": 1,
    "destinations": ["site.name in [T1_US_*_Disk T2_US_*]"],
    "sources": ["site.storage_type == DISK and site.name notin [T1_US_*_Disk T2_US_*]"],
    "protect": true}}}
"""


def errors(text: str) -> list[str]:
    with pytest.raises(PolicyErrors) as caught:
        parse_enforcer_rules(text, file="e.json")
    return [str(e) for e in caught.value]


def rules(**rule: object) -> str:
    body = {
        "replicas": ["dataset.name == /*/*/MINIAOD*"],
        "num_copies": 1,
        "destinations": ["site.name == T2_US_A"],
        **rule,
    }
    return json.dumps(
        {"partition": "Physics", "default_destination_group": "AnalysisOps", "rules": {"r": body}}
    )


def test_page_example_parses() -> None:
    policy = parse_enforcer_rules(PAGE_RULES)
    assert (policy.partition, policy.default_destination_group) == ("Physics", "AnalysisOps")
    (rule,) = policy.rules
    assert (rule.name, rule.num_copies, rule.protect, rule.line) == ("us_miniaod", 1, True, 2)
    assert len(rule.replicas.items) == len(rule.destinations.items) == len(rule.sources.items) == 1
    assert "site.storage_type" in policy.variables()


def test_sources_and_protect_are_optional() -> None:
    (rule,) = parse_enforcer_rules(rules()).rules
    assert rule.sources.items == () and not rule.protect


def test_the_schema_is_exported_for_documentation() -> None:
    schema = EnforcerFile.model_json_schema()
    assert {"partition", "default_destination_group", "rules"} <= set(schema["properties"])


def test_condition_errors_are_located_by_rule_index_line_and_column() -> None:
    text = (
        '{"partition": "Physics", "default_destination_group": "AnalysisOps",\n'
        ' "rules": {"us_miniaod": {\n'
        '    "replicas": ["dataset.name == /*/*/MINIAOD*", "dataset.nme == x"],\n'
        '    "num_copies": 1,\n'
        '    "destinations": ["site.occupancy > high"],\n'
        '    "sources": ["dataset.size > 1"]}}}\n'
    )
    assert errors(text) == [
        "e.json:3:52: rules.us_miniaod.replicas[1]: unknown variable 'dataset.nme'; did you "
        "mean 'dataset.name'?",
        "e.json:5:40: rules.us_miniaod.destinations[0]: expected a number (a size may carry a "
        "unit, as in 1.5TB), found 'high'",
        "e.json:6:18: rules.us_miniaod.sources[0]: variable 'dataset.size' cannot be used in "
        "site conditions (only in replica and block-replica conditions)",
    ]


def test_schema_errors_are_located_at_the_value() -> None:
    text = (
        '{"partition": "Physics", "default_destination_group": "AnalysisOps",\n'
        ' "rules": {"a": {"replicas": ["replica.size > 1TB"], "num_copies": 0,\n'
        '                 "destinations": [], "colour": "red"}}}\n'
    )
    assert errors(text) == [
        "e.json:2:68: rules.a.num_copies: Input should be greater than or equal to 1",
        "e.json:3:34: rules.a.destinations: List should have at least 1 item after validation, "
        "not 0",
        "e.json:3:48: rules.a.colour: Extra inputs are not permitted",
    ]


def test_missing_fields_point_at_their_object() -> None:
    assert errors('{"partition": "P", "rules": {"a": {"replicas": ["replica.incomplete"]}}}') == [
        "e.json:1:1: default_destination_group: Field required",
        "e.json:1:35: rules.a.num_copies: Field required",
        "e.json:1:35: rules.a.destinations: Field required",
    ]


def test_one_bad_rule_does_not_hide_errors_of_another() -> None:
    text = json.dumps(
        {
            "partition": "P",
            "default_destination_group": "G",
            "rules": {
                "a": {"replicas": ["x.y == 1"], "num_copies": 1, "destinations": ["always"]},
                "b": {"replicas": ["replica.incomplete"], "destinations": ["nevr"]},
            },
        }
    )
    found = errors(text)
    assert [e.split(": ", 2)[1] for e in found] == [
        "rules.a.replicas[0]",
        "rules.b.num_copies",
        "rules.b.destinations[0]",
    ]


def test_duplicate_rule_names_are_refused() -> None:
    text = (
        '{"partition": "P", "default_destination_group": "G", "rules": {\n'
        ' "a": {"replicas": ["replica.incomplete"], "num_copies": 1, "destinations": ["always"]},\n'
        ' "a": {"replicas": ["replica.incomplete"], "num_copies": 2, "destinations": ["always"]}'
        "}}\n"
    )
    assert errors(text) == ["e.json:3:2: rules.a: duplicate rule 'a'"]


def test_invalid_json_names_line_and_column() -> None:
    assert errors('{"partition": "P",\n  "rules": [}') == [
        "e.json:2:13: invalid JSON: Expecting value"
    ]


def test_not_an_object() -> None:
    assert errors("[1, 2]") == [
        "e.json:1:1: Input should be a valid dictionary or instance of EnforcerFile"
    ]


def test_conditions_with_escapes_point_at_the_string() -> None:
    text = rules(replicas=['dataset.name == "x" and dataset.nme == y'])
    (message,) = errors(text)
    assert "rules.r.replicas[0]: unknown variable 'dataset.nme'" in message
    column = text.index('"dataset.name == \\"x') + 1
    assert message.startswith(f"e.json:1:{column}:")


# ------------------------------------------------------------------------------ evaluation


def grid() -> tuple[object, dict[str, object]]:
    inventory = make_inventory()
    sites = {
        name: add_site(inventory, name, quotas={"Physics": 10**15})
        for name in ("T1_IT_CNAF_Disk", "T2_US_A", "T2_US_B", "T2_US_C")
    }
    add_site(inventory, "T1_IT_CNAF_MSS", storage_type=StorageType.TAPE)
    mini = add_dataset(inventory, "/A/Run-v1/MINIAOD", block_sizes=(10, 10))
    aod = add_dataset(inventory, "/A/Run-v1/AOD")
    lonely = add_dataset(inventory, "/B/Run-v1/MINIAODSIM")
    add_replica(inventory, mini, sites["T1_IT_CNAF_Disk"])
    add_replica(inventory, mini, sites["T2_US_B"])
    add_replica(inventory, mini, sites["T2_US_A"], partial=["b1"])
    add_replica(inventory, mini, sites["T2_US_C"])
    add_replica(inventory, aod, sites["T1_IT_CNAF_Disk"])
    add_replica(inventory, aod, sites["T2_US_A"])
    add_replica(inventory, lonely, sites["T1_IT_CNAF_Disk"])
    return inventory, {"mini": mini, "lonely": lonely, **sites}


def test_counted_replicas_complete_first_then_in_flight_up_to_num_copies() -> None:
    inventory, objs = grid()
    policy = parse_enforcer_rules(PAGE_RULES.replace('"num_copies": 1', '"num_copies": 3'))
    (status,) = evaluate_enforcer(policy, inventory, now=NOW)  # type: ignore[arg-type]
    mini = objs["mini"]
    counted = status.counted[mini]  # type: ignore[index]
    assert [r.site.name for r in counted] == ["T2_US_B", "T2_US_C", "T2_US_A"]
    assert (status.there, status.in_flight) == (2, 1)
    assert status.missing == {objs["lonely"]: 3}
    assert status.missing_copies == 3
    assert status.datasets == 2


def test_protect_marks_only_the_counted_replicas() -> None:
    inventory, _ = grid()
    policy = parse_enforcer_rules(PAGE_RULES)
    statuses = evaluate_enforcer(policy, inventory, now=NOW)  # type: ignore[arg-type]
    protected = protected_replicas(statuses)
    assert {(r.dataset.name, r.site.name) for r in protected} == {("/A/Run-v1/MINIAOD", "T2_US_B")}


def test_without_protect_nothing_is_protected() -> None:
    inventory, _ = grid()
    policy = parse_enforcer_rules(PAGE_RULES.replace('"protect": true', '"protect": false'))
    assert protected_replicas(evaluate_enforcer(policy, inventory, now=NOW)) == set()  # type: ignore[arg-type]


def test_datasets_without_a_replica_at_a_source_site_are_not_subject() -> None:
    inventory, _ = grid()
    policy = parse_enforcer_rules(
        rules(sources=["site.name == T2_US_C"], destinations=["site.name == T2_US_B"])
    )
    (status,) = evaluate_enforcer(policy, inventory, now=NOW)  # type: ignore[arg-type]
    assert [d.name for d in status.counted] == ["/A/Run-v1/MINIAOD"]


def test_sites_conditions_see_the_partition_occupancy() -> None:
    inventory, _ = grid()
    policy = parse_enforcer_rules(rules(destinations=["site.occupancy < 0.5"]))
    usage = {name: {"Physics": (9, 10)} for name in inventory.sites}  # type: ignore[attr-defined]
    usage["T2_US_C"] = {"Physics": (1, 10)}
    (status,) = evaluate_enforcer(policy, inventory, now=NOW, usage=usage)  # type: ignore[arg-type]
    assert {r.site.name for rs in status.counted.values() for r in rs} == {"T2_US_C"}
