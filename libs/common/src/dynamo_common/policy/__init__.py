"""The policy language: conditions compiled to predicates, partition definitions, and the
per-site partition usage (grammar in POLICY_LANGUAGE.md).

Detox policies, enforcer rules and attribute providers build on this: they register variables in
``REGISTRY`` (or a copy), fill ``Attributes`` tables, and parse their lines with
``parse_condition`` (passing the line and column where each condition starts).
"""

from dynamo_common.policy.compiler import (
    AttributeTables,
    Binding,
    Condition,
    compile_predicates,
    parse_condition,
)
from dynamo_common.policy.dates import AbsoluteDate, AnnualDate, DateSpec, RelativeDate, parse_date
from dynamo_common.policy.errors import PolicyError, PolicyErrors
from dynamo_common.policy.parser import OPERATORS, Op, Predicate, parse_predicates
from dynamo_common.policy.partitions import (
    PartitionDefinition,
    PartitionSet,
    compile_partitions,
    membership_predicates,
    parse_partitions,
    site_usage,
)
from dynamo_common.policy.variables import (
    REGISTRY,
    AttributeProvider,
    Attributes,
    Context,
    Level,
    OnTape,
    SiteContext,
    Variable,
    VariableRegistry,
    VarType,
    default_variables,
    occupancy,
)

__all__ = [
    "OPERATORS",
    "REGISTRY",
    "AbsoluteDate",
    "AnnualDate",
    "AttributeProvider",
    "AttributeTables",
    "Attributes",
    "Binding",
    "Condition",
    "Context",
    "DateSpec",
    "Level",
    "OnTape",
    "Op",
    "PartitionDefinition",
    "PartitionSet",
    "PolicyError",
    "PolicyErrors",
    "Predicate",
    "RelativeDate",
    "SiteContext",
    "VarType",
    "Variable",
    "VariableRegistry",
    "compile_partitions",
    "compile_predicates",
    "default_variables",
    "membership_predicates",
    "occupancy",
    "parse_condition",
    "parse_date",
    "parse_partitions",
    "parse_predicates",
    "site_usage",
]
