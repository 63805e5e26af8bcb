"""Detox policy files: every statement, the default decision, Order and Algo, comments, and
every error with its line and column. Production files parse unchanged."""

from __future__ import annotations

import time

import pytest

from dynamo_common.policy import Context, PolicyErrors
from dynamo_common.policy.detox import Action, DetoxPolicy, parse_detox_policy, policy_digest
from tests.unit.policy.test_policy_language_examples import PAGE_POLICY, PRODUCTION_POLICIES

HEAD = "Partition Physics\nWhen site.occupancy > 0.9\nUntil site.occupancy < 0.85\n"
PHYSICS, EXPRESS_TAIL = PRODUCTION_POLICIES.split("On site.name in [T2_CH_CERN]\n")
EXPRESS = "Partition Express\nOn site.name in [T2_CH_CERN]\n" + EXPRESS_TAIL + "Protect\n"


def parse(text: str) -> DetoxPolicy:
    return parse_detox_policy(text, file="p.txt")


def errors(text: str) -> list[str]:
    with pytest.raises(PolicyErrors) as caught:
        parse_detox_policy(text, file="p.txt")
    return [str(e) for e in caught.value]


# ------------------------------------------------------------------------------ statements


def test_page_example_parses_into_its_statements() -> None:
    policy = parse(PAGE_POLICY)
    assert policy.partition == "Physics"
    assert policy.partition_line == 1
    assert [s.text for s in policy.on] == ["site.name in [T1_*_Disk T2_*]"]
    assert [s.text for s in policy.when] == ["site.occupancy > 0.9"]
    assert [s.text for s in policy.until] == ["site.occupancy < 0.85"]
    assert [(r.action, r.line) for r in policy.rules] == [
        (Action.PROTECT_BLOCK, 5),
        (Action.DELETE, 6),
        (Action.PROTECT, 7),
        (Action.PROTECT, 8),
        (Action.DISMISS, 9),
    ]
    assert (policy.default, policy.default_line) == (Action.PROTECT, 10)
    assert [(k.variable.name, k.descending) for k in policy.order] == [
        ("dataset.usage_rank", True),
        ("replica.size", False),
    ]
    assert not policy.static
    assert policy.digest == policy_digest(PAGE_POLICY)


def test_production_physics_policy_parses_unchanged() -> None:
    policy = parse_detox_policy(PHYSICS, file="detox/Physics.txt")
    assert policy.partition == "Physics"
    assert len(policy.on) == 1 and len(policy.when) == 2 and len(policy.until) == 1
    assert len(policy.rules) == 15
    assert policy.default is Action.DISMISS
    assert [r.action for r in policy.rules].count(Action.DISMISS_BLOCK) == 2


def test_production_express_policy_with_order_none_parses_unchanged() -> None:
    policy = parse_detox_policy(EXPRESS, file="detox/Express.txt")
    assert policy.order == ()
    assert policy.order_line == 7
    assert [s.text for s in policy.when] == ["always"]


def test_conditions_keep_the_line_and_column_where_they_start() -> None:
    policy = parse(HEAD + "  Protect   replica.size > 1TB  # big ones\nDismiss\n")
    rule = policy.rules[0]
    assert (rule.line, rule.column, rule.text) == (4, 13, "replica.size > 1TB")
    condition = rule.condition(now=0.0)
    assert (condition.line, condition.column) == (4, 13)


def test_several_on_when_until_lines_are_kept_in_order() -> None:
    policy = parse(
        "Partition P\nOn site.name == A\nOn site.name == B\nWhen always\n"
        "When site.status == MORGUE\nUntil never\nUntil site.occupancy < 0.5\nDismiss\n"
    )
    assert [s.text for s in policy.on] == ["site.name == A", "site.name == B"]
    assert [s.line for s in policy.when] == [4, 5]
    assert [s.line for s in policy.until] == [6, 7]


def test_site_statements_compile_to_site_conditions() -> None:
    policy = parse(HEAD + "Dismiss\n")
    condition = policy.when[0].condition(now=0.0)
    assert condition.context is Context.SITE


@pytest.mark.parametrize(
    ("keyword", "action", "context"),
    [
        ("Protect", Action.PROTECT, Context.REPLICA),
        ("Delete", Action.DELETE, Context.REPLICA),
        ("Dismiss", Action.DISMISS, Context.REPLICA),
        ("Ignore", Action.IGNORE, Context.REPLICA),
        ("ProtectBlock", Action.PROTECT_BLOCK, Context.BLOCKREPLICA),
        ("DeleteBlock", Action.DELETE_BLOCK, Context.BLOCKREPLICA),
        ("DismissBlock", Action.DISMISS_BLOCK, Context.BLOCKREPLICA),
    ],
)
def test_every_action_makes_a_rule_in_its_context(
    keyword: str, action: Action, context: Context
) -> None:
    policy = parse(HEAD + f"{keyword} dataset.size > 1GB\nProtect\n")
    (rule,) = policy.rules
    assert rule.action is action
    assert rule.context is context
    assert rule.block_level is action.block_level
    assert rule.condition(now=0.0).context is context


def test_block_rules_also_compile_in_the_replica_context() -> None:
    policy = parse(HEAD + "ProtectBlock blockreplica.is_locked\nDismiss\n")
    condition = policy.rules[0].condition(now=0.0, context=Context.REPLICA)
    assert condition.context is Context.REPLICA


@pytest.mark.parametrize(
    ("block", "dataset"),
    [
        (Action.PROTECT_BLOCK, Action.PROTECT),
        (Action.DELETE_BLOCK, Action.DELETE),
        (Action.DISMISS_BLOCK, Action.DISMISS),
        (Action.IGNORE, Action.IGNORE),
    ],
)
def test_block_actions_have_a_dataset_level_meaning(block: Action, dataset: Action) -> None:
    assert block.dataset_level is dataset


@pytest.mark.parametrize("default", ["Protect", "Delete", "Dismiss", "Ignore"])
def test_an_action_alone_is_the_default_decision(default: str) -> None:
    policy = parse(HEAD + default + "\n")
    assert policy.default is Action(default)
    assert policy.default_line == 4
    assert policy.rules == ()


def test_rules_after_the_default_line_still_apply() -> None:
    policy = parse(HEAD + "Dismiss\nProtect replica.incomplete\n")
    assert [r.line for r in policy.rules] == [5]


def test_comments_and_blank_lines_are_ignored() -> None:
    policy = parse(
        "# Physics deletion policy\n\nPartition Physics   # the partition\n"
        "When site.occupancy > 0.9\n   \nUntil site.occupancy < 0.85\n"
        "Protect dataset.name == /A/B#x/RAW  # a '#' inside a word is text\nDismiss\n"
    )
    assert policy.partition == "Physics"
    assert policy.rules[0].text == "dataset.name == /A/B#x/RAW"


def test_partition_names_may_hold_spaces() -> None:
    assert parse("Partition IB RelVal\nWhen always\nUntil never\nDismiss\n").partition == (
        "IB RelVal"
    )


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("Order none", ()),
        ("Order increasing replica.size", (("replica.size", False),)),
        ("Order decreasing dataset.last_update", (("dataset.last_update", True),)),
        (
            "Order decreasing dataset.usage_rank increasing replica.size decreasing site.name",
            (("dataset.usage_rank", True), ("replica.size", False), ("site.name", True)),
        ),
        ("Order increasing replica.incomplete", (("replica.incomplete", False),)),
    ],
)
def test_order_lines(line: str, expected: tuple[tuple[str, bool], ...]) -> None:
    policy = parse(HEAD + line + "\nDismiss\n")
    assert tuple((k.variable.name, k.descending) for k in policy.order) == expected
    assert policy.order_line == 4


def test_no_order_line_means_no_order() -> None:
    assert parse(HEAD + "Dismiss\n").order == ()


def test_algo_static() -> None:
    assert parse(HEAD + "Algo Static\nDismiss\n").static
    assert not parse(HEAD + "Dismiss\n").static


def test_variables_lists_every_name_the_policy_uses() -> None:
    policy = parse(PAGE_POLICY)
    assert {"site.name", "site.occupancy", "blockreplica.is_locked", "dataset.usage_rank"} <= (
        policy.variables()
    )
    assert "replica.size" in policy.variables()  # from Order


def test_line_text_returns_the_source_line() -> None:
    policy = parse(PAGE_POLICY)
    assert policy.line_text(9) == "Dismiss dataset.usage_rank > 150"
    assert policy.line_text(99) == ""


# ---------------------------------------------------------------------------------- errors


def test_condition_errors_point_into_the_line() -> None:
    assert errors(HEAD + "Protect dataset.nmae == x\nDismiss\n") == [
        "p.txt:4:9: unknown variable 'dataset.nmae'; did you mean 'dataset.name'?"
    ]
    assert errors("Partition P\nWhen site.occupancy > lots\nUntil never\nDismiss\n") == [
        "p.txt:2:23: expected a number (a size may carry a unit, as in 1.5TB), found 'lots'"
    ]


def test_a_file_with_errors_reports_all_of_them_in_line_order() -> None:
    bad = (
        "Partition Physics\n"
        "When site.occupancy > 0.9 and foo.bar < 2\n"
        "Until\n"
        "Protekt dataset.name == x\n"
        "Order decreasing dataset.status increasing\n"
        "Algo Dynamic\n"
        "DeleteBlock\n"
        "Dismiss\n"
        "Dismiss\n"
        "Protect dataset.status == valid\n"
    )
    assert errors(bad) == [
        "p.txt:2:31: unknown variable 'foo.bar'",
        "p.txt:3:6: expected a site condition after 'Until'",
        "p.txt:4:1: unknown statement 'Protekt'; did you mean 'Protect'?",
        "p.txt:5:18: cannot order by enumerated variable 'dataset.status': Order takes "
        "numbers, times, texts and booleans",
        "p.txt:5:43: expected a variable after 'increasing'",
        "p.txt:6:6: expected 'Static' after 'Algo', found 'Dynamic'",
        "p.txt:7:1: 'DeleteBlock' needs a condition; the default decision is one of Protect, "
        "Delete, Dismiss or Ignore",
        "p.txt:9:1: a second default decision (the first is 'Dismiss' on line 8)",
        "p.txt:10:27: unknown value 'valid' for dataset.status; expected one of VALID, "
        "PRODUCTION, INVALID, DEPRECATED, DELETED, IGNORED, UNKNOWN (enumerated values are "
        "written in capitals)",
    ]


def test_missing_required_statements() -> None:
    assert errors("Protect replica.incomplete\n") == [
        "p.txt:1:1: the policy needs a 'Partition' line (the partition this policy manages)",
        "p.txt:1:1: the policy needs a 'When' line (the deletion trigger)",
        "p.txt:1:1: the policy needs an 'Until' line (the stop condition)",
        "p.txt:1:1: the policy needs a default decision (an action alone on its line, e.g. "
        "'Dismiss')",
    ]


def test_an_empty_file_misses_everything() -> None:
    assert len(errors("# nothing here\n\n")) == 4


def test_a_when_line_with_an_error_is_not_also_reported_missing() -> None:
    assert errors("Partition P\nWhen site.occupancy >\nUntil never\nDismiss\n") == [
        "p.txt:2:22: expected a value after '>'"
    ]


def test_partition_errors() -> None:
    assert errors("Partition\nWhen always\nUntil never\nDismiss\n") == [
        "p.txt:1:10: expected a partition name after 'Partition'"
    ]
    assert errors("Partition A\nPartition B\nWhen always\nUntil never\nDismiss\n") == [
        "p.txt:2:1: a second 'Partition' line (first on line 1); a policy manages one partition"
    ]
    assert errors("Partition A/B\nWhen always\nUntil never\nDismiss\n") == [
        "p.txt:1:11: invalid partition name 'A/B' (letters, digits, '_', '-', '.', spaces)"
    ]


@pytest.mark.parametrize("keyword", ["On", "When", "Until"])
def test_site_keyword_without_condition(keyword: str) -> None:
    text = "Partition P\nWhen always\nUntil never\nDismiss\n" + f"{keyword}   \n"
    assert errors(text) == [
        f"p.txt:5:{len(keyword) + 1}: expected a site condition after '{keyword}'"
    ]


def test_site_statements_refuse_replica_variables() -> None:
    assert errors("Partition P\nOn dataset.size > 1\nWhen always\nUntil never\nDismiss\n") == [
        "p.txt:2:4: variable 'dataset.size' cannot be used in site conditions (only in replica "
        "and block-replica conditions)"
    ]


def test_rules_refuse_site_partition_variables() -> None:
    assert errors(HEAD + "Dismiss site.occupancy > 0.5\nProtect\n") == [
        "p.txt:4:9: variable 'site.occupancy' cannot be used in replica conditions (only in "
        "site conditions)"
    ]
    assert errors(HEAD + "DismissBlock site.quota > 5\nProtect\n") == [
        "p.txt:4:14: variable 'site.quota' cannot be used in block-replica conditions (only in "
        "site conditions)"
    ]


def test_unknown_statement_without_close_keyword_lists_the_statements() -> None:
    assert errors(HEAD + "Remove dataset.size > 1\nDismiss\n") == [
        "p.txt:4:1: unknown statement 'Remove'; expected Partition, On, When, Until, Order, "
        "Algo or an action (Protect, Delete, Dismiss, Ignore, ProtectBlock, DeleteBlock, "
        "DismissBlock)"
    ]


def test_keywords_are_case_sensitive_with_a_hint() -> None:
    assert (
        errors(HEAD + "dismiss\n")
        == [
            "p.txt:4:1: unknown statement 'dismiss'; did you mean 'Dismiss'?",
            "p.txt:1:1: the policy needs a default decision (an action alone on its line, e.g. "
            "'Dismiss')",
        ][::-1]
    )


def test_rule_keyword_without_condition_is_the_default_even_with_trailing_comment() -> None:
    assert parse(HEAD + "Dismiss   # the rest\n").default is Action.DISMISS


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("Order", "4:6: expected 'none' or 'increasing'/'decreasing' and a variable after 'Order'"),
        ("Order none replica.size", "4:12: unexpected 'replica.size' after 'Order none'"),
        (
            "Order increasng replica.size",
            "4:7: expected 'increasing' or 'decreasing', found 'increasng'; did you mean "
            "'increasing'?",
        ),
        ("Order replica.size", "4:7: expected 'increasing' or 'decreasing', found 'replica.size'"),
        ("Order decreasing", "4:17: expected a variable after 'decreasing'"),
        (
            "Order increasing replica.sise",
            "4:18: unknown variable 'replica.sise'; did you mean 'replica.size'?",
        ),
        (
            "Order increasing blockreplica.last_update",
            "4:18: cannot order by 'blockreplica.last_update': Order takes dataset, replica and "
            "site variables (a value per dataset replica)",
        ),
        (
            "Order increasing site.occupancy",
            "4:18: cannot order by 'site.occupancy': Order takes dataset, replica and site "
            "variables (a value per dataset replica)",
        ),
    ],
)
def test_order_errors(line: str, message: str) -> None:
    assert errors(HEAD + line + "\nDismiss\n") == [f"p.txt:{message}"]


def test_a_second_order_or_algo_line_is_an_error() -> None:
    assert errors(HEAD + "Order none\nOrder increasing replica.size\nDismiss\n") == [
        "p.txt:5:1: a second 'Order' line (first on line 4)"
    ]
    assert errors(HEAD + "Algo Static\nAlgo Static\nDismiss\n") == [
        "p.txt:5:1: a second 'Algo' line (first on line 4)"
    ]
    assert errors(HEAD + "Algo\nDismiss\n") == ["p.txt:4:5: expected 'Static' after 'Algo'"]


# --------------------------------------------------------------------------------- scale


def campaign(lines: int) -> str:
    body = [
        f"Delete dataset.name == /Campaign{i}/Run2016{chr(65 + i % 8)}-v{i % 3 + 1}/AOD"
        + (f" and site.name == T2_US_Site{i % 40}" if i % 4 == 0 else "")
        for i in range(lines - 5)
    ]
    return "\n".join(["Partition Physics", "When always", "Until never", *body, "Dismiss", ""])


def test_a_10000_line_campaign_file_parses_quickly() -> None:
    text = campaign(10_000)
    started = time.perf_counter()
    policy = parse_detox_policy(text)
    elapsed = time.perf_counter() - started
    assert len(policy.rules) == 9_995
    # The benchmark measures it; this only guards against a quadratic slip.
    assert elapsed < 5.0
