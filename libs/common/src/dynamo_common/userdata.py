"""The user-data namespace (issue 9), shared by the services that must respect it.

A user's datasets are named ``/<user>/<anything>/USER`` and their files live under
``/store/user/<user>/``; only Dynamo writes there, on the owner's (or an admin's) behalf. The
dealer manages that data; detox must not let one user lock another's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from dynamo_common.policy.parser import wildcard_pattern

TIER: Final = "USER"
USER_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_PROBE: Final = "/dynamo-any-other-user/any-dataset/" + TIER
"""A user dataset of nobody in particular: a pattern that matches it reaches every user."""


def dataset_owner(dataset: str) -> str | None:
    """The user whose namespace ``dataset`` names, or None when it is not a user dataset."""
    parts = dataset.split("/")
    if len(parts) != 4 or parts[0] != "" or parts[3] != TIER or not parts[2]:
        return None
    return parts[1] if USER_RE.match(parts[1]) else None


def others_reached(pattern: str, user: str, datasets: Iterable[str]) -> str | None:
    """A user dataset of someone other than ``user`` that the dataset ``pattern`` (``*`` and
    ``?`` wildcards) reaches: one of ``datasets`` or, for a pattern open to any user's
    namespace, a generic one. None when the pattern stays out of other users' data."""
    regex = wildcard_pattern(pattern)
    if regex is None:
        owner = dataset_owner(pattern)
        return pattern if owner is not None and owner != user else None
    if regex.fullmatch(_PROBE):
        return f"/<any user>/<any dataset>/{TIER}"
    for name in datasets:
        owner = dataset_owner(name)
        if owner is not None and owner != user and regex.fullmatch(name):
            return name
    return None
