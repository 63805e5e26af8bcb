"""Per-site usage per partition, cached per inventory sequence number (it is a pass over every
block replica, and the site list is read far more often than the inventory changes)."""

from __future__ import annotations

from dynamo_common.model.objects import Inventory


class UsageCache:
    def __init__(self) -> None:
        self._seq = -1
        self._usage: dict[str, dict[str, tuple[int, int]]] = {}

    def get(self, model: Inventory) -> dict[str, dict[str, tuple[int, int]]]:
        if model.seq != self._seq:
            self._usage = compute_usage(model)
            self._seq = model.seq
        return self._usage


def compute_usage(model: Inventory) -> dict[str, dict[str, tuple[int, int]]]:
    """site -> partition -> (bytes used, quota). Partitions are evaluated with the condition
    language; a site's quota for a partition comes from the site record."""
    try:  # TEMPORARY until the policy package lands
        from dynamo_common.policy import site_usage

        usage = site_usage(model, list(model.partitions.values()))
    except ImportError:
        usage = {}
    result: dict[str, dict[str, tuple[int, int]]] = {}
    for site in model.sites.values():
        per = usage.get(site.name, {})
        names = set(per) | set(site.quotas)
        result[site.name] = {
            name: (per.get(name, (0, 0))[0], site.quotas.get(name, 0)) for name in sorted(names)
        }
    return result
