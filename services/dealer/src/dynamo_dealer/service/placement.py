"""Placement rules: a rule may veto putting a dataset at a site.

The dealer's own rule kind is a replica condition of the shared condition language,
evaluated on the replica the copy would create (``dataset.*`` and ``site.*`` variables, e.g.
``dataset.name == /*/*HI*/* and site.name == T2_US_*`` for "no heavy-ion data at US
sites"); any object with a ``veto`` method can stand beside it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from dynamo_common.model.objects import Dataset, DatasetReplica, Group, Site
from dynamo_common.policy.compiler import Condition, Pred, parse_condition

_NOBODY = Group(0, "None")


class PlacementRule(Protocol):
    @property
    def name(self) -> str: ...

    def veto(self, dataset: Dataset, site: Site) -> str | None:
        """Why ``dataset`` must not go to ``site``, or None."""
        ...


@dataclass(slots=True)
class ConditionVeto:
    name: str
    condition: Condition
    _by_site: dict[str, Pred | bool] = field(default_factory=dict)
    """The condition specialised to each site seen (``site.*`` decided once per site)."""

    def veto(self, dataset: Dataset, site: Site) -> str | None:
        test = self._by_site.get(site.name)
        if test is None:
            test = self._by_site[site.name] = self.condition.specialize(site)
        if test is False:
            return None
        # A detached replica: constructing it registers nothing in the inventory.
        if test is True or test(DatasetReplica(dataset, site, _NOBODY)):
            return f"vetoed by placement rule {self.name} ({self.condition.text})"
        return None


def parse_vetoes(rules: Mapping[str, str], now: float | None = None) -> list[PlacementRule]:
    """Placement rules from configuration (name -> replica condition); raises
    ``PolicyErrors`` naming the rule for a condition that does not parse."""
    return [
        ConditionVeto(
            name, parse_condition(text, context="replica", file=f"<placement rule {name}>", now=now)
        )
        for name, text in rules.items()
    ]
