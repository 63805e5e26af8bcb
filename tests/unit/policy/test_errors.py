"""Every error of the condition language: its message, its line and its column."""

from __future__ import annotations

import pytest

from dynamo_common.policy import Context, PolicyError, PolicyErrors, parse_condition


def errors_of(text: str, context: str = "replica", line: int = 1, column: int = 1) -> list[str]:
    with pytest.raises(PolicyErrors) as caught:
        parse_condition(
            text, context=Context(context), file="detox/Physics.txt", line=line, column=column
        )
    return [str(error) for error in caught.value.errors]


def test_error_format_is_file_line_column_message() -> None:
    error = PolicyError("unknown variable 'x'", file="p.txt", line=3, column=14)
    assert str(error) == "p.txt:3:14: unknown variable 'x'"
    assert (error.file, error.line, error.column, error.message) == (
        "p.txt",
        3,
        14,
        "unknown variable 'x'",
    )


def test_columns_count_from_where_the_condition_starts_in_its_line() -> None:
    # As in 'Protect dataset.nmae == x' on line 12: the condition starts at column 9.
    assert errors_of("dataset.nmae == x", line=12, column=9) == [
        "detox/Physics.txt:12:9: unknown variable 'dataset.nmae'; did you mean 'dataset.name'?"
    ]


def test_unknown_variable_suggests_the_closest_known_name() -> None:
    assert errors_of("replica.num_full_disk_copy_common_owners < 2") == [
        "detox/Physics.txt:1:1: unknown variable 'replica.num_full_disk_copy_common_owners'; "
        "did you mean 'replica.num_full_disk_copy_common_owner'?"
    ]


def test_unknown_variable_without_a_close_name_has_no_suggestion() -> None:
    assert errors_of("popularity > 3") == ["detox/Physics.txt:1:1: unknown variable 'popularity'"]


def test_retired_variable_of_old_policy_files_points_to_its_successor() -> None:
    assert errors_of("replica.has_locked_block", column=9) == [
        "detox/Physics.txt:1:9: unknown variable 'replica.has_locked_block'; "
        "did you mean 'blockreplica.is_locked'?"
    ]


def test_variable_of_another_context_says_where_it_belongs() -> None:
    assert errors_of("site.occupancy > 0.9") == [
        "detox/Physics.txt:1:1: variable 'site.occupancy' cannot be used in replica conditions "
        "(only in site conditions)"
    ]
    assert errors_of("dataset.size > 1", context="site") == [
        "detox/Physics.txt:1:1: variable 'dataset.size' cannot be used in site conditions "
        "(only in replica and block-replica conditions)"
    ]


def test_unknown_operator_lists_the_operators_of_the_type() -> None:
    assert errors_of("dataset.size >= 1TB") == [
        "detox/Physics.txt:1:14: unknown operator '>='; expected one of ==, !=, <, >, in, notin"
    ]
    assert errors_of("dataset.name is /A/B/C") == [
        "detox/Physics.txt:1:14: unknown operator 'is'; expected one of ==, !=, =~, !=~, in, notin"
    ]


def test_operator_not_valid_for_the_type_of_the_variable() -> None:
    assert errors_of("dataset.name < /A/B/C") == [
        "detox/Physics.txt:1:14: operator '<' is not valid for a text variable 'dataset.name'; "
        "expected one of ==, !=, =~, !=~, in, notin"
    ]
    assert errors_of("dataset.last_update == 2018-01-01") == [
        "detox/Physics.txt:1:21: operator '==' is not valid for a time variable "
        "'dataset.last_update'; expected one of <, >, older_than, newer_than"
    ]
    assert errors_of("dataset.size older_than 1 week ago") == [
        "detox/Physics.txt:1:14: operator 'older_than' is not valid for a number variable "
        "'dataset.size'; expected one of ==, !=, <, >, in, notin"
    ]
    assert errors_of("dataset.status =~ VALID") == [
        "detox/Physics.txt:1:16: operator '=~' is not valid for an enumerated variable "
        "'dataset.status'; expected one of ==, !=, in, notin"
    ]


def test_boolean_variables_take_no_operator() -> None:
    assert errors_of("replica.incomplete == true") == [
        "detox/Physics.txt:1:20: operator '==' is not valid for boolean variable "
        "'replica.incomplete'; write 'replica.incomplete' or 'not replica.incomplete'"
    ]
    assert errors_of("replica.incomplete yes") == [
        "detox/Physics.txt:1:20: unexpected 'yes' after boolean variable 'replica.incomplete'; "
        "write 'replica.incomplete' or 'not replica.incomplete'"
    ]


def test_not_applies_to_boolean_variables_only() -> None:
    assert errors_of("not dataset.size") == [
        "detox/Physics.txt:1:5: 'not' applies to boolean variables only; 'dataset.size' is "
        "a number variable"
    ]


def test_not_needs_a_variable() -> None:
    assert errors_of("dataset.size > 1 and not") == [
        "detox/Physics.txt:1:22: expected a boolean variable after 'not'"
    ]


def test_a_non_boolean_variable_alone_needs_an_operator() -> None:
    assert errors_of("dataset.size") == [
        "detox/Physics.txt:1:13: expected an operator after 'dataset.size' "
        "(one of ==, !=, <, >, in, notin)"
    ]


def test_an_operator_needs_a_value() -> None:
    assert errors_of("dataset.name ==") == ["detox/Physics.txt:1:16: expected a value after '=='"]


def test_a_variable_name_is_expected_first() -> None:
    assert errors_of("== VALID") == ["detox/Physics.txt:1:1: expected a variable, found '=='"]


def test_unknown_enumerated_value_lists_the_allowed_ones() -> None:
    assert errors_of("dataset.status == OBSOLETE") == [
        "detox/Physics.txt:1:19: unknown value 'OBSOLETE' for dataset.status; expected one of "
        "VALID, PRODUCTION, INVALID, DEPRECATED, DELETED, IGNORED, UNKNOWN"
    ]
    assert errors_of("site.storage_type == TAPE") == [
        "detox/Physics.txt:1:22: unknown value 'TAPE' for site.storage_type; expected one of "
        "DISK, MSS, BUFFER"
    ]


def test_lower_case_enumerated_value_hints_at_capitals() -> None:
    assert errors_of("dataset.on_tape == full") == [
        "detox/Physics.txt:1:20: unknown value 'full' for dataset.on_tape; expected one of "
        "NONE, PARTIAL, FULL (enumerated values are written in capitals)"
    ]


def test_unknown_enumerated_value_inside_a_list() -> None:
    assert errors_of("site.status in [READY DEAD]", context="site") == [
        "detox/Physics.txt:1:23: unknown value 'DEAD' for site.status; expected one of "
        "READY, WAITROOM, MORGUE"
    ]


def test_unparsable_date() -> None:
    assert errors_of("dataset.last_update older_than last tuesday-ish") == [
        "detox/Physics.txt:1:32: unparsable date 'last tuesday-ish'; expected a date such as "
        "'2 weeks ago', '90 days ago', '12 months ago', 'January 1' or '2018-03-01'"
    ]


def test_invalid_calendar_date() -> None:
    assert errors_of("dataset.last_update older_than 2018-02-30") == [
        "detox/Physics.txt:1:32: invalid date: day is out of range for month"
    ]


def test_unbalanced_list_is_reported_at_its_bracket() -> None:
    assert errors_of("site.name in [T1_*_Disk T2_*", context="site") == [
        "detox/Physics.txt:1:14: unbalanced list: '[' is not closed by ']'"
    ]


def test_unbalanced_list_does_not_hide_the_next_predicate() -> None:
    assert errors_of("site.name in [T1_* and site.nmae == x", context="site") == [
        "detox/Physics.txt:1:14: unbalanced list: '[' is not closed by ']'",
        "detox/Physics.txt:1:24: unknown variable 'site.nmae'; did you mean 'site.name'?",
    ]


def test_list_without_opening_bracket() -> None:
    assert errors_of("site.name in T1_*_Disk T2_*]", context="site") == [
        "detox/Physics.txt:1:14: expected '[' after 'in'"
    ]


def test_nested_bracket_in_a_list() -> None:
    assert errors_of("site.name notin [T1_* [T2_*]]", context="site") == [
        "detox/Physics.txt:1:23: unbalanced list: '[' inside a list"
    ]


def test_empty_list() -> None:
    assert errors_of("site.name in []", context="site") == [
        "detox/Physics.txt:1:14: empty list: expected items between '[' and ']'"
    ]


def test_trailing_garbage_after_a_list() -> None:
    assert errors_of("site.name in [T2_*] T3_*", context="site") == [
        "detox/Physics.txt:1:21: unexpected 'T3_*' after the list"
    ]


def test_trailing_garbage_after_a_number() -> None:
    assert errors_of("site.occupancy > 0.9 0.85", context="site") == [
        "detox/Physics.txt:1:22: unexpected '0.85' after the value"
    ]
    assert errors_of("site.occupancy > 0.9 percent", context="site") == [
        "detox/Physics.txt:1:22: unexpected 'percent' after the value"
    ]


def test_trailing_garbage_after_an_enumerated_value() -> None:
    assert errors_of("site.status == READY MORGUE", context="site") == [
        "detox/Physics.txt:1:22: unexpected 'MORGUE' after the value"
    ]


def test_trailing_garbage_after_a_negated_variable() -> None:
    assert errors_of("not replica.incomplete at all") == [
        "detox/Physics.txt:1:24: unexpected 'at' after 'not replica.incomplete'"
    ]


def test_number_expected() -> None:
    assert errors_of("dataset.size > big") == [
        "detox/Physics.txt:1:16: expected a number (a size may carry a unit, as in 1.5TB), "
        "found 'big'"
    ]


def test_unknown_size_unit() -> None:
    assert errors_of("dataset.size > 3XB") == [
        "detox/Physics.txt:1:17: unknown size unit 'XB'; expected B, kB, MB, GB, TB, PB "
        "(decimal) or KiB, MiB, GiB, TiB, PiB"
    ]


def test_invalid_regular_expression_points_into_the_pattern() -> None:
    assert errors_of("dataset.name =~ /A/(B/C") == [
        "detox/Physics.txt:1:20: invalid regular expression: missing ), unterminated subpattern"
    ]


def test_empty_condition() -> None:
    assert errors_of("") == ["detox/Physics.txt:1:1: empty condition: expected a predicate"]
    assert errors_of("   ", column=8) == [
        "detox/Physics.txt:1:11: empty condition: expected a predicate"
    ]


def test_dangling_and() -> None:
    assert errors_of("replica.incomplete and") == [
        "detox/Physics.txt:1:20: expected a predicate after 'and'"
    ]
    assert errors_of("and replica.incomplete") == [
        "detox/Physics.txt:1:1: expected a predicate before 'and'"
    ]
    assert errors_of("replica.incomplete and and dataset.size > 1") == [
        "detox/Physics.txt:1:20: expected a predicate after 'and'"
    ]


def test_every_error_of_a_line_is_reported_not_just_the_first() -> None:
    errors = errors_of(
        "dataset.nmae == x and dataset.status == valid and dataset.size < 3 apples",
        line=4,
        column=9,
    )
    assert errors == [
        "detox/Physics.txt:4:9: unknown variable 'dataset.nmae'; did you mean 'dataset.name'?",
        "detox/Physics.txt:4:49: unknown value 'valid' for dataset.status; expected one of "
        "VALID, PRODUCTION, INVALID, DEPRECATED, DELETED, IGNORED, UNKNOWN "
        "(enumerated values are written in capitals)",
        "detox/Physics.txt:4:76: unexpected 'apples' after the value",
    ]


def test_policy_errors_prints_one_error_per_line() -> None:
    with pytest.raises(PolicyErrors) as caught:
        parse_condition("a.b == 1 and c.d == 2", context="replica")
    assert str(caught.value).splitlines() == [
        "<string>:1:1: unknown variable 'a.b'",
        "<string>:1:14: unknown variable 'c.d'",
    ]
    assert len(caught.value) == 2
