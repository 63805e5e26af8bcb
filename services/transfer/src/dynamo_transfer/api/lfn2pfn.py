"""``GET /api/v1/transfers/lfn2pfn``: where a file lives (or would be written) at a site.

The answer comes from the same place as the service's own copies: the site as this service's
read model of the inventory holds it, its rules compiled by ``PfnMapper.from_site``, and, when
no protocol is named, the service's ``protocol_preference``. So the PFN shown without a
protocol is the one a copy to or from that site would use.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from dynamo_common.app import ProblemError
from dynamo_common.messages.types import LFN
from dynamo_common.model.objects import Site
from dynamo_common.readmodel import ReadModelNotReady
from dynamo_common.storage import NoMapping, PfnMapper
from dynamo_transfer.api.deps import runtime
from dynamo_transfer.runtime import TransferRuntime

log = logging.getLogger("dynamo.transfer")

router = APIRouter(prefix="/api/v1/transfers", tags=["storage names"])

ALL = "all"
# Problem types, so that a client can tell the 404s apart without parsing the detail.
INVALID_LFN = "urn:dynamo:problem:invalid-lfn"
UNKNOWN_SITE = "urn:dynamo:problem:unknown-site"
NO_PROTOCOL = "urn:dynamo:problem:no-protocol"
NO_MAPPING = "urn:dynamo:problem:no-mapping"
# How long an unknown site may make a request wait for the read model to catch up with the
# inventory (a site registered a moment ago): a bounded wait, never the inventory's timeout.
CATCH_UP_SECONDS = 5.0

_LFN: TypeAdapter[str] = TypeAdapter(LFN)


class PfnOut(BaseModel):
    protocol: str
    pfn: str | None = Field(description="null when this protocol's rules do not match the LFN")
    error: str | None = Field(None, description="why there is no PFN (protocol=all only)")


class Lfn2Pfn(BaseModel):
    site: str
    lfn: str
    protocol: str | None = Field(
        description="as asked: a protocol, 'all', or null for the service's preference order"
    )
    pfns: list[PfnOut] = Field(
        description="protocol=all: every protocol of the site, in the site's order; "
        "otherwise the one PFN (first preferred protocol that maps the LFN, or the one asked)"
    )


_PROBLEMS: dict[int | str, dict[str, object]] = {
    404: {
        "description": "Unknown site, the site has no such protocol, or no rule maps the LFN "
        f"(problem types {UNKNOWN_SITE}, {NO_PROTOCOL}, {NO_MAPPING}).",
        "content": {"application/problem+json": {}},
    },
    422: {
        "description": "The LFN is not an absolute normalised path (e.g. it contains '..') "
        f"(problem type {INVALID_LFN}), or a parameter is missing.",
        "content": {"application/problem+json": {}},
    },
}


@router.get(
    "/lfn2pfn",
    response_model=Lfn2Pfn,
    summary="The PFN of an LFN at a site, by the site's rules",
    responses=_PROBLEMS,
)
async def lfn2pfn(
    site: str = Query(..., min_length=1, max_length=200, description="site name"),
    lfn: str = Query(..., min_length=1, max_length=1024, description="e.g. /store/data/..."),
    protocol: str | None = Query(
        None,
        min_length=1,
        max_length=64,
        description="a protocol of the site, or 'all'; default: the service's "
        "protocol_preference, first protocol that maps the LFN",
    ),
    rt: TransferRuntime = Depends(runtime),
) -> Lfn2Pfn:
    try:
        _LFN.validate_python(lfn)
    except ValidationError as exc:
        reasons = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        raise ProblemError(
            422,
            f"invalid LFN {lfn!r}: {reasons}",
            title="Invalid LFN",
            type=INVALID_LFN,
            extensions={"lfn": lfn},
        ) from None
    found = await _site(rt, site)
    mapper = rt.pfns.mapper(found)
    if protocol == ALL:
        pfns = _every_protocol(mapper, lfn)
    elif protocol is not None:
        pfns = [_one_protocol(mapper, lfn, protocol)]
    else:
        pfns = [_preferred(mapper, lfn, rt.preference)]
    return Lfn2Pfn(site=found.name, lfn=lfn, protocol=protocol, pfns=pfns)


async def _site(rt: TransferRuntime, name: str) -> Site:
    try:
        model = rt.readmodel.model
    except ReadModelNotReady:
        raise ProblemError(503, "the copy of the inventory is still loading") from None
    found = model.sites.get(name)
    if found is None and await _caught_up(rt):
        found = rt.readmodel.model.sites.get(name)
    if found is None:
        raise ProblemError(
            404,
            f"unknown site {name!r}",
            title="Unknown site",
            type=UNKNOWN_SITE,
            extensions={"site": name},
        )
    return found


async def _caught_up(rt: TransferRuntime) -> bool:
    """Wait (briefly) for the read model to reach the inventory's latest change; True if it
    was behind and has caught up. A site registered just before the request is then found
    (read-your-writes), as intake does before refusing a request."""
    seq = rt.readmodel.seq
    try:
        async with asyncio.timeout(CATCH_UP_SECONDS):
            latest = await rt.inventory.last_seq(seq)
            if latest <= seq:
                return False
            await rt.readmodel.wait_for_seq(latest)
    except Exception as exc:
        # The inventory is unreachable or slow: answer from what this service knows.
        log.info("lfn2pfn: could not catch up with the inventory: %r", exc)
        return False
    return True


def _no_protocol(mapper: PfnMapper, wanted: list[str]) -> ProblemError:
    has = ", ".join(mapper.protocols) or "none"
    return ProblemError(
        404,
        f"site {mapper.site!r} has no protocol {' or '.join(repr(p) for p in wanted)} "
        f"(it has: {has})",
        title="No protocol",
        type=NO_PROTOCOL,
        extensions={"site": mapper.site, "protocols": list(mapper.protocols)},
    )


def _no_mapping(mapper: PfnMapper, lfn: str, tried: list[str]) -> ProblemError:
    return ProblemError(
        404,
        f"no rule of site {mapper.site!r} maps {lfn!r} (protocols tried: {', '.join(tried)})",
        title="No mapping",
        type=NO_MAPPING,
        extensions={"site": mapper.site, "lfn": lfn, "protocols": tried},
    )


def _map(mapper: PfnMapper, lfn: str, protocol: str) -> str | None:
    # The LFN was validated and the protocol checked: only NoMapping is left to happen.
    try:
        return mapper.lfn_to_pfn(lfn, protocol)
    except NoMapping:
        return None


def _one_protocol(mapper: PfnMapper, lfn: str, protocol: str) -> PfnOut:
    if not mapper.has_protocol(protocol):
        raise _no_protocol(mapper, [protocol])
    pfn = _map(mapper, lfn, protocol)
    if pfn is None:
        raise _no_mapping(mapper, lfn, [protocol])
    return PfnOut(protocol=protocol, pfn=pfn)


def _preferred(mapper: PfnMapper, lfn: str, preference: list[str]) -> PfnOut:
    usable = [p for p in preference if mapper.has_protocol(p)]
    if not usable:
        raise _no_protocol(mapper, preference)
    for protocol in usable:
        pfn = _map(mapper, lfn, protocol)
        if pfn is not None:
            return PfnOut(protocol=protocol, pfn=pfn)
    raise _no_mapping(mapper, lfn, usable)


def _every_protocol(mapper: PfnMapper, lfn: str) -> list[PfnOut]:
    if not mapper.protocols:
        raise ProblemError(
            404,
            f"site {mapper.site!r} has no storage protocol",
            title="No protocol",
            type=NO_PROTOCOL,
            extensions={"site": mapper.site, "protocols": []},
        )
    out = []
    for protocol in mapper.protocols:
        pfn = _map(mapper, lfn, protocol)
        error = None if pfn is not None else f"no {protocol!r} rule matches the LFN"
        out.append(PfnOut(protocol=protocol, pfn=pfn, error=error))
    if all(p.pfn is None for p in out):
        raise _no_mapping(mapper, lfn, list(mapper.protocols))
    return out
