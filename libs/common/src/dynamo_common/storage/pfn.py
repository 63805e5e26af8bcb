"""LFN -> PFN mapping, like CMS's trivial file catalogue (DESIGN.md section 5).

Each site has, per protocol, an ordered list of rules ``(regex, template)``. The regex must match
the whole LFN; the first rule that does wins, and the template's ``$1``..``$9`` are replaced by the
regex's groups. Example: ``("/store/(.*)", "root://xrootd.example.org:1094//data/store/$1")``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from pydantic import TypeAdapter, ValidationError

from dynamo_common.messages.types import LFN

if TYPE_CHECKING:
    from dynamo_common.model.objects import Site

__all__ = ["InvalidLfn", "NoMapping", "NoProtocol", "PfnError", "PfnMapper", "PfnRule"]

_LFN_ADAPTER: TypeAdapter[str] = TypeAdapter(LFN)
_GROUP_REF = re.compile(r"\$(\d)")

RawRules = Iterable[tuple[str, Iterable[tuple[str, str]]]]


class PfnError(Exception):
    """An LFN cannot be mapped to a PFN."""


class NoProtocol(PfnError, KeyError):
    def __init__(self, site: str, protocol: str, known: Iterable[str] = ()) -> None:
        self.site = site
        self.protocol = protocol
        known_list = sorted(known)
        super().__init__(
            f"site {site!r} has no rules for protocol {protocol!r}"
            + (f" (it has: {', '.join(known_list)})" if known_list else " (it has none)")
        )

    def __str__(self) -> str:
        # KeyError would quote the message.
        return str(self.args[0])


class NoMapping(PfnError):
    def __init__(self, lfn: str, protocol: str, site: str = "") -> None:
        self.lfn = lfn
        self.protocol = protocol
        self.site = site
        where = f" of site {site!r}" if site else ""
        super().__init__(f"no {protocol!r} rule{where} matches LFN {lfn!r}")


class InvalidLfn(PfnError, ValueError):
    def __init__(self, lfn: str, reason: str) -> None:
        self.lfn = lfn
        super().__init__(f"invalid LFN {lfn!r}: {reason}")


class PfnRule:
    """One rule: the compiled regex (matched against the whole LFN) and its template."""

    __slots__ = ("pattern", "regex", "template")

    def __init__(self, pattern: str, template: str) -> None:
        try:
            self.regex = re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"invalid PFN rule regex {pattern!r}: {exc}") from exc
        # Checked now, when the site is configured, rather than on the first LFN that hits it.
        for ref in _GROUP_REF.findall(template):
            if int(ref) == 0 or int(ref) > self.regex.groups:
                raise ValueError(
                    f"PFN template {template!r} refers to ${ref} but {pattern!r} has "
                    f"{self.regex.groups} group(s)"
                )
        self.pattern = pattern
        self.template = template

    def apply(self, lfn: str) -> str | None:
        match = self.regex.fullmatch(lfn)
        if match is None:
            return None
        return _GROUP_REF.sub(lambda ref: match.group(int(ref.group(1))) or "", self.template)

    def __repr__(self) -> str:
        return f"PfnRule({self.pattern!r}, {self.template!r})"


class PfnMapper:
    """The LFN -> PFN rules of one site."""

    __slots__ = ("_rules", "site")

    def __init__(self, site: str, rules: Mapping[str, Iterable[tuple[str, str]]]) -> None:
        self.site = site
        self._rules: dict[str, tuple[PfnRule, ...]] = {
            protocol: tuple(PfnRule(pattern, template) for pattern, template in protocol_rules)
            for protocol, protocol_rules in rules.items()
        }

    @classmethod
    def from_rules(cls, site: str, protocols: RawRules) -> PfnMapper:
        """From ``Site.protocols``-shaped tuples: ``((protocol, ((regex, template), ...)), ...)``.

        A protocol listed twice keeps the rules of its first listing, as a lookup of the raw
        tuples would.
        """
        rules: dict[str, Iterable[tuple[str, str]]] = {}
        for protocol, protocol_rules in protocols:
            rules.setdefault(protocol, tuple(protocol_rules))
        return cls(site, rules)

    @classmethod
    def from_site(cls, site: Site) -> PfnMapper:
        return cls.from_rules(site.name, site.protocols)

    @property
    def protocols(self) -> tuple[str, ...]:
        return tuple(self._rules)

    def has_protocol(self, protocol: str) -> bool:
        return protocol in self._rules

    def lfn_to_pfn(self, lfn: str, protocol: str) -> str:
        """The PFN of ``lfn`` for ``protocol``.

        Raises :class:`InvalidLfn` for an LFN that is not an absolute normalised path (so no
        LFN can reach outside the site's namespace once mapped), :class:`NoProtocol` and
        :class:`NoMapping`.
        """
        try:
            _LFN_ADAPTER.validate_python(lfn)
        except ValidationError as exc:
            raise InvalidLfn(lfn, "; ".join(_reason(e) for e in exc.errors())) from None
        rules = self._rules.get(protocol)
        if rules is None:
            raise NoProtocol(self.site, protocol, self._rules)
        for rule in rules:
            pfn = rule.apply(lfn)
            if pfn is not None:
                return pfn
        raise NoMapping(lfn, protocol, self.site)

    def __repr__(self) -> str:
        return f"PfnMapper({self.site!r}, protocols={list(self._rules)})"


def _reason(error: Mapping[str, object]) -> str:
    message = str(error.get("msg", "invalid"))
    # Pydantic prefixes messages raised in validators with "Value error, ".
    return message.removeprefix("Value error, ")
