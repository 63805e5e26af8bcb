"""The conditions of POLICY_LANGUAGE.md's examples, and of production Dynamo policy files,
parse unchanged in the context their statement gives them."""

from __future__ import annotations

import pytest

from dynamo_common.policy import Context, parse_condition

SITE_KEYWORDS = ("On", "When", "Until")
ACTIONS = ("Protect", "Delete", "Dismiss", "Ignore", "ProtectBlock", "DeleteBlock", "DismissBlock")

PAGE_POLICY = """\
Partition Physics
On site.name in [T1_*_Disk T2_*]
When site.occupancy > 0.9
Until site.occupancy < 0.85
ProtectBlock blockreplica.is_locked
Delete dataset.status == INVALID and dataset.last_update older_than 2 weeks ago
Protect replica.enforcer_protected
Protect dataset.on_tape != FULL and replica.num_full_other_copy_common_owner < 2
Dismiss dataset.usage_rank > 150
Protect
Order decreasing dataset.usage_rank increasing replica.size
"""

# detox/Physics.txt and detox/Express.txt of the CMS dynamo-policies repository.
PRODUCTION_POLICIES = """\
Partition Physics
On site.name in [T*_MSS T0_CH_CERN_Disk T1_*_Disk T2_*]
When site.occupancy > 0.9
When site.status == MORGUE
Until site.status != MORGUE and site.occupancy < 0.85
Ignore site.name == T*_MSS
ProtectBlock blockreplica.is_locked
Delete dataset.status == DEPRECATED and dataset.last_update older_than 1 week ago
Protect replica.incomplete
Protect dataset.on_tape == PARTIAL
Protect replica.is_last_transfer_source
Protect dataset.name == /*/*/RAW and dataset.on_tape != FULL
DismissBlock dataset.name == /*/*/RECO and dataset.last_update older_than 90 days ago and blockreplica.owner == DataOps
ProtectBlock dataset.on_tape == NONE and blockreplica.owner == DataOps
DeleteBlock blockreplica.owner == DataOps
DismissBlock dataset.name == /*/*/RAW and dataset.name != /*Scouting*/*/RAW and blockreplica.last_update older_than 60 days ago
Protect dataset.on_protected_site and replica.num_full_disk_copy_common_owner < 2
Dismiss dataset.usage_rank > 100 and dataset.name != /*/*/MINIAOD*
Dismiss dataset.last_update older_than 150 days ago and replica.last_block_created older_than 30 days ago and replica.num_access == 0 and dataset.name != /*/*/MINIAOD*
Protect dataset.name == /*/*/MINIAOD* and dataset.num_full_disk_copy < 3
Dismiss
Order decreasing dataset.usage_rank increasing replica.size
On site.name in [T2_CH_CERN]
When always
Until never
ProtectBlock blockreplica.last_update newer_than 60 days ago
Protect dataset.name == /*/*/ALCARECO and replica.first_block_created newer_than January 1
Order none
"""  # noqa: E501

ENFORCER_RULE = {
    "replicas": ["dataset.name == /*/*/MINIAOD*"],
    "destinations": ["site.name in [T1_US_*_Disk T2_US_*]"],
    "sources": ["site.storage_type == DISK and site.name notin [T1_US_*_Disk T2_US_*]"],
}


def statement_conditions(policy: str) -> list[tuple[int, str, str, int]]:
    """(line, context, condition, column) of every statement that carries a condition."""
    found = []
    for lineno, line in enumerate(policy.splitlines(), 1):
        keyword, _, rest = line.partition(" ")
        if not rest.strip() or keyword in ("Partition", "Order"):
            continue
        assert keyword in SITE_KEYWORDS + ACTIONS, line
        context = "site" if keyword in SITE_KEYWORDS else "replica"
        found.append((lineno, context, rest, len(keyword) + 2))
    return found


@pytest.mark.parametrize(("line", "context", "text", "column"), statement_conditions(PAGE_POLICY))
def test_page_example_policy_conditions_parse(
    line: int, context: str, text: str, column: int
) -> None:
    condition = parse_condition(
        text,
        context=Context(context),
        line=line,
        column=column,
        file="example.txt",
    )
    assert condition.predicates


@pytest.mark.parametrize(
    ("line", "context", "text", "column"), statement_conditions(PRODUCTION_POLICIES)
)
def test_production_policy_conditions_parse_unchanged(
    line: int, context: str, text: str, column: int
) -> None:
    condition = parse_condition(
        text,
        context=Context(context),
        line=line,
        column=column,
        file="production.txt",
    )
    assert condition.predicates


@pytest.mark.parametrize(
    ("key", "context"),
    [("replicas", "replica"), ("destinations", "site"), ("sources", "site")],
)
def test_page_enforcer_rule_conditions_parse(key: str, context: str) -> None:
    for text in ENFORCER_RULE[key]:
        assert parse_condition(text, context=Context(context)).predicates


@pytest.mark.parametrize(
    "text",
    [
        "blockreplica.owner == AnalysisOps and site.storage_type == DISK",
        "site.storage_type == MSS",
    ],
)
def test_page_partition_conditions_parse_in_block_replica_context(text: str) -> None:
    assert parse_condition(text, context="blockreplica").predicates
