"""LFN -> PFN through each site's rules, with the compiled rules cached per site."""

from __future__ import annotations

from dynamo_common.model.objects import Site
from dynamo_common.storage import PfnError, PfnMapper


class Pfns:
    """The service's ``PfnFunc``: intake checks and placement map every file, and compiling
    a site's rules each time would cost more than mapping."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, object], PfnMapper] = {}

    def mapper(self, site: Site) -> PfnMapper:
        # The protocols are part of the key: a site whose rules change gets a new mapper.
        key = (site.name, site.protocols)
        mapper = self._cache.get(key)
        if mapper is None:
            mapper = self._cache[key] = PfnMapper.from_site(site)
        return mapper

    def __call__(self, site: Site, protocol: str, lfn: str) -> str | None:
        try:
            return self.mapper(site).lfn_to_pfn(lfn, protocol)
        except PfnError:
            return None
