"""Who may call what: the one table of endpoint permissions.

Every request under ``/api/v1`` is checked against :data:`PERMISSIONS` before it is served or
forwarded. The first rule whose method and path pattern match decides the minimal role.
``READ`` is the role of reads: anonymous when the gateway's ``public_reads`` is on, user
otherwise. A write that no rule names is refused to everyone but admins, so an endpoint that
a service adds without a rule here is closed, not open (a test walks every endpoint of the
merged OpenAPI document and fails on such a write).

Patterns use the OpenAPI template syntax: ``{name}`` is one path segment, ``{name:path}`` the
rest of the path (slashes included).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final, Literal

from dynamo_gateway.service.roles import Role

READ: Final = "read"
Need = Role | Literal["read"]

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(:path)?\}")
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """The regular expression of an OpenAPI-style path template."""
    out: list[str] = []
    position = 0
    for match in _PARAM.finditer(pattern):
        out.append(re.escape(pattern[position : match.start()]))
        out.append(".+" if match.group(2) else "[^/]+")
        position = match.end()
    out.append(re.escape(pattern[position:]))
    return re.compile("".join(out) + r"\Z")


@dataclass(frozen=True, slots=True)
class Rule:
    methods: frozenset[str]
    pattern: str
    need: Need
    why: str = ""
    regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "regex", compile_pattern(self.pattern))

    def matches(self, method: str, path: str) -> bool:
        return method in self.methods and self.regex.match(path) is not None


def _rule(methods: str, pattern: str, need: Need, why: str = "") -> Rule:
    return Rule(frozenset(methods.split()), pattern, need, why)


_R = "GET HEAD"
_A = Role.ADMIN
_O = Role.OPERATOR
_U = Role.USER
_N = Role.ANONYMOUS
V1 = "/api/v1"

PERMISSIONS: Final[tuple[Rule, ...]] = (
    # ---- the gateway's own endpoints: accounts, tokens, certificate DNs
    _rule(_R, f"{V1}/auth/whoami", _N, "anyone may ask who the gateway thinks they are"),
    _rule(_R, f"{V1}/auth/tokens", _U, "a user's own API tokens"),
    _rule("POST", f"{V1}/auth/tokens", _U, "a user makes API tokens for their own account"),
    _rule("DELETE", f"{V1}/auth/tokens/{{token_id}}", _U, "own tokens (admins: any)"),
    _rule(_R, f"{V1}/auth/accounts", _A),
    _rule("POST", f"{V1}/auth/accounts", _A),
    _rule(_R, f"{V1}/auth/accounts/{{name}}", _A),
    _rule("PATCH", f"{V1}/auth/accounts/{{name}}", _A, "change a role, disable an account"),
    _rule("POST", f"{V1}/auth/accounts/{{name}}/tokens", _A, "tokens for service accounts"),
    _rule("POST", f"{V1}/auth/accounts/{{name}}/dns", _A, "map certificate DNs to an account"),
    _rule("POST", f"{V1}/auth/accounts/{{name}}/dns/delete", _A),
    # ---- inventory: writes are bookkeeping done by services and operators ("manage sites")
    _rule("POST", f"{V1}/sites", _O, "register or change sites"),
    _rule("POST", f"{V1}/groups", _O),
    _rule("POST", f"{V1}/datasets", _O, "data registration (service accounts)"),
    _rule("POST", f"{V1}/datasets/delete", _O),
    _rule("POST", f"{V1}/blocks", _O),
    _rule("POST", f"{V1}/files", _O),
    _rule("POST", f"{V1}/files/remove", _O),
    _rule("POST PATCH", f"{V1}/replicas", _O, "users ask for copies through transfers"),
    _rule("POST", f"{V1}/replicas/delete", _O),
    _rule("POST", f"{V1}/containers", _O),
    _rule("POST", f"{V1}/containers/delete", _O),
    _rule("POST", f"{V1}/partitions", _O, "partitions are policy"),
    _rule("POST", f"{V1}/partitions/delete", _O),
    # ---- transfer: users request copies and deletions; operators release held files
    _rule("POST", f"{V1}/transfers/requests", _U, "copy requests"),
    _rule("POST", f"{V1}/transfers/requests/files", _U),
    _rule("POST", f"{V1}/transfers/deletions", _U, "deletion requests"),
    _rule("POST", f"{V1}/transfers/deletions/files", _U),
    _rule("POST", f"{V1}/transfers/held/release", _O),
    # ---- consistency: triggering, approving and halting checks are operators' levers
    _rule("POST", f"{V1}/consistency/sites/{{site}}/check", _O, "run a check now"),
    _rule("POST", f"{V1}/consistency/sites/{{site}}/approve", _O, "approve a flagged check"),
    _rule("PUT", f"{V1}/consistency/sites/{{site}}/state", _O, "enable, disable, halt a site"),
    # ---- detox: operators run cycles; anyone signed in may test a policy or lock data
    _rule("POST", f"{V1}/cycles", _O, "run a detox cycle now"),
    _rule("POST", f"{V1}/test-runs", _U, "a policy test: nothing is deleted"),
    _rule("POST", f"{V1}/locks", _U, "protect data from deletion for a time"),
    _rule("PATCH DELETE", f"{V1}/locks/{{lock_id}}", _U, "detox allows the owner or an admin"),
    _rule("POST", f"{V1}/popularity/accesses", _O, "access reports (service accounts)"),
    _rule("POST", f"{V1}/simulations", _O, "a what-if simulation: CPU-heavy, queued"),
    # ---- dealer: users ask for copies and cancel theirs; operators run cycles, subscribe sites
    _rule("POST", f"{V1}/dealer/requests", _U, "copy requests"),
    _rule(
        "POST",
        f"{V1}/dealer/requests/{{request_id}}/cancel",
        _U,
        "the dealer allows the requester or an admin",
    ),
    _rule("POST", f"{V1}/dealer/deletion-requests", _U, "deletion requests (never a last copy)"),
    _rule(
        "POST",
        f"{V1}/dealer/deletion-requests/{{request_id}}/cancel",
        _U,
        "the dealer allows the requester or an admin",
    ),
    _rule("POST", f"{V1}/dealer/subscriptions", _O, "a site follows a dataset or container"),
    _rule("DELETE", f"{V1}/dealer/subscriptions/{{subscription_id}}", _O),
    _rule("POST", f"{V1}/dealer/cycles", _O, "run a dealer cycle now"),
    # ---- user data: users write their own namespace; the dealer allows the owner or an admin
    _rule("POST", f"{V1}/dealer/userdata/datasets", _U, "declare a dataset in one's namespace"),
    _rule("POST", f"{V1}/dealer/userdata/inject", _U, "register one's own files (verified)"),
    _rule("POST", f"{V1}/dealer/userdata/import", _U, "copy one's data in from elsewhere"),
    _rule("POST", f"{V1}/dealer/userdata/complete", _U, "close one's remaining blocks"),
    _rule("POST", f"{V1}/dealer/userdata/subscribe", _U, "consolidate one's dataset at a site"),
    _rule("POST", f"{V1}/dealer/userdata/delete", _U, "delete one's own dataset"),
    # ---- every other read
    _rule(_R, f"{V1}/{{path:path}}", READ, "reads are public when public_reads is on"),
)

_UNLISTED_WRITE = Rule(frozenset(), "*", Role.ADMIN, "a write no rule names: admins only")
_UNLISTED_READ = Rule(frozenset(), "*", READ, "a read no rule names")


@dataclass(frozen=True, slots=True)
class Decision:
    rule: Rule
    need: Role
    explicit: bool
    """False when no rule of the table named the endpoint (the closed default applied)."""

    def allows(self, role: Role) -> bool:
        return role >= self.need


class PermissionTable:
    def __init__(self, rules: tuple[Rule, ...] = PERMISSIONS, *, public_reads: bool) -> None:
        self.rules = rules
        self.public_reads = public_reads
        self._read_role = Role.ANONYMOUS if public_reads else Role.USER

    def resolve(self, need: Need) -> Role:
        return self._read_role if need == READ else Role(need)

    def decide(self, method: str, path: str) -> Decision:
        method = method.upper()
        for rule in self.rules:
            if rule.matches(method, path):
                return Decision(rule, self.resolve(rule.need), explicit=True)
        default = _UNLISTED_READ if method in READ_METHODS else _UNLISTED_WRITE
        return Decision(default, self.resolve(default.need), explicit=False)
