"""LFN -> PFN mapping: ordered per-protocol rules, whole-LFN matches, refused LFNs."""

from __future__ import annotations

import pytest

from dynamo_common.model.objects import Site
from dynamo_common.storage.pfn import InvalidLfn, NoMapping, NoProtocol, PfnError, PfnMapper

PROTOCOLS = (
    (
        "root",
        (
            # More specific first: the first match wins.
            (r"/store/user/([^/]+)/(.*)", "root://user.example.org:1094//users/$1/store/$2"),
            (r"/store/(.*)", "root://se.example.org:1094//data/store/$1"),
        ),
    ),
    ("file", ((r"/store/(.*)", "file:///srv/site/store/$1"),)),
    ("davs", ((r"/(store|mc)/(.*)", "davs://webdav.example.org:443/$1/$2"),)),
)


@pytest.fixture
def mapper() -> PfnMapper:
    return PfnMapper.from_site(Site(1, "T2_TEST", protocols=PROTOCOLS))


def test_first_matching_rule_wins(mapper: PfnMapper) -> None:
    assert (
        mapper.lfn_to_pfn("/store/user/alice/a/b.root", "root")
        == "root://user.example.org:1094//users/alice/store/a/b.root"
    )
    assert (
        mapper.lfn_to_pfn("/store/data/Run1/x.root", "root")
        == "root://se.example.org:1094//data/store/data/Run1/x.root"
    )


def test_protocols_are_independent(mapper: PfnMapper) -> None:
    assert mapper.lfn_to_pfn("/store/a/b", "file") == "file:///srv/site/store/a/b"
    assert mapper.lfn_to_pfn("/mc/a/b", "davs") == "davs://webdav.example.org:443/mc/a/b"
    assert mapper.protocols == ("root", "file", "davs")
    assert mapper.has_protocol("file")
    assert not mapper.has_protocol("gsiftp")


def test_regex_must_match_the_whole_lfn() -> None:
    mapper = PfnMapper("S", {"root": [(r"/store/data", "root://h//x")]})
    # A prefix match would map /store/data/more to the PFN of /store/data.
    with pytest.raises(NoMapping):
        mapper.lfn_to_pfn("/store/data/more", "root")
    # and a match in the middle of the LFN does not count either
    mapper = PfnMapper("S", {"root": [(r"store/(.*)", "root://h//$1")]})
    with pytest.raises(NoMapping):
        mapper.lfn_to_pfn("/store/a", "root")


def test_no_mapping_message(mapper: PfnMapper) -> None:
    with pytest.raises(NoMapping) as info:
        mapper.lfn_to_pfn("/other/file", "root")
    assert info.value.lfn == "/other/file"
    assert info.value.protocol == "root"
    assert "/other/file" in str(info.value)
    assert "root" in str(info.value)
    assert "T2_TEST" in str(info.value)


def test_no_protocol_message(mapper: PfnMapper) -> None:
    with pytest.raises(NoProtocol) as info:
        mapper.lfn_to_pfn("/store/a", "gsiftp")
    assert info.value.site == "T2_TEST"
    assert info.value.protocol == "gsiftp"
    message = str(info.value)
    assert "T2_TEST" in message and "gsiftp" in message and "davs, file, root" in message
    assert isinstance(info.value, PfnError)


def test_site_without_protocols() -> None:
    mapper = PfnMapper.from_site(Site(2, "T3_EMPTY"))
    with pytest.raises(NoProtocol, match="has none"):
        mapper.lfn_to_pfn("/store/a", "root")


@pytest.mark.parametrize(
    "lfn",
    [
        "store/relative",
        "/store/../etc/passwd",
        "/store/./a",
        "/store/a/..",
        "/store//a",
        "/store/a/",
        "/store/a b",
        "/store/a\nb",
        "/",
        "",
    ],
)
def test_unsafe_lfns_are_refused_before_mapping(mapper: PfnMapper, lfn: str) -> None:
    # Even a catch-all rule must not turn these into PFNs outside the namespace.
    catch_all = PfnMapper("S", {"file": [(r"(.*)", "file:///srv/site$1")]})
    for m in (mapper, catch_all):
        with pytest.raises(InvalidLfn) as info:
            m.lfn_to_pfn(lfn, "file")
        assert isinstance(info.value, ValueError)
        assert repr(lfn) in str(info.value)


def test_invalid_lfn_reason_is_readable(mapper: PfnMapper) -> None:
    with pytest.raises(InvalidLfn, match=r"must not contain '\.' or '\.\.'"):
        mapper.lfn_to_pfn("/store/../x", "root")


def test_templates_with_several_groups_and_optional_groups() -> None:
    mapper = PfnMapper(
        "S",
        {"root": [(r"/store/(mc|data)(/extra)?/(.*)", "root://h//$1/$3$2")]},
    )
    assert mapper.lfn_to_pfn("/store/mc/a/b", "root") == "root://h//mc/a/b"
    assert mapper.lfn_to_pfn("/store/data/extra/a", "root") == "root://h//data/a/extra"


def test_literal_template_without_groups() -> None:
    mapper = PfnMapper("S", {"root": [(r"/store/fixed", "root://h//elsewhere/fixed")]})
    assert mapper.lfn_to_pfn("/store/fixed", "root") == "root://h//elsewhere/fixed"


def test_bad_rules_fail_when_the_mapper_is_built() -> None:
    with pytest.raises(ValueError, match="invalid PFN rule regex"):
        PfnMapper("S", {"root": [(r"/store/(", "root://h//$1")]})
    with pytest.raises(ValueError, match=r"refers to \$2"):
        PfnMapper("S", {"root": [(r"/store/(.*)", "root://h//$2")]})
    with pytest.raises(ValueError, match=r"refers to \$0"):
        PfnMapper("S", {"root": [(r"/store/(.*)", "root://h//$0")]})


def test_from_rules_keeps_the_first_listing_of_a_protocol() -> None:
    mapper = PfnMapper.from_rules(
        "S",
        [
            ("root", [(r"/(.*)", "root://first//$1")]),
            ("root", [(r"/(.*)", "root://second//$1")]),
        ],
    )
    assert mapper.lfn_to_pfn("/a", "root") == "root://first//a"
