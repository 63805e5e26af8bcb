"""Listing roots, the PFN -> LFN inversion, and directory sets."""

from __future__ import annotations

import pytest

from dynamo_common.storage import PfnMapper
from dynamo_consistency.service.paths import (
    ListingRoot,
    Namespace,
    NamespaceError,
    PrefixSet,
    parent_dirs,
)

XRD = "root://se.example:1094//data/store/$1"


def mapper(**protocols: list[tuple[str, str]]) -> PfnMapper:
    return PfnMapper("T2_XX_Test", protocols)


def test_parent_dirs() -> None:
    assert list(parent_dirs("/store/a/b.root")) == ["/store/a", "/store"]
    assert list(parent_dirs("/store")) == []


def test_prefix_set_covers_directories_and_what_is_below_them_only() -> None:
    dirs = PrefixSet(["/store/user/", "/store/temp"])
    assert dirs.covers("/store/user")
    assert dirs.covers("/store/user/jdoe/f.root")
    assert not dirs.covers("/store/users/f.root")
    assert not dirs.covers("/store")
    assert len(dirs) == 2 and dirs
    assert not PrefixSet() and not PrefixSet().covers("/store/x")
    assert PrefixSet(["/"]).covers("/anything/at/all")


def test_the_root_pfn_comes_from_the_site_rules() -> None:
    ns = Namespace(mapper(root=[("/store/(.*)", XRD)]), "root", ["/store"])
    (root,) = ns.roots
    assert root == ListingRoot("/store", "root://se.example:1094//data/store")
    assert root.to_lfn("root://se.example:1094//data/store/mc/a.root") == "/store/mc/a.root"
    assert root.to_lfn("root://se.example:1094//data/store") == "/store"
    assert root.to_lfn("root://se.example:1094//data/store2/a.root") is None
    assert root.to_lfn("root://other:1094//data/store/a.root") is None


def test_files_mapped_elsewhere_by_another_rule_are_not_visible() -> None:
    rules = [
        ("/store/unmerged/(.*)", "root://scratch.example//unmerged/$1"),
        ("/store/(.*)", XRD),
    ]
    ns = Namespace(mapper(root=rules), "root", ["/store"])
    assert ns.root_of("/store/mc/x/a.root") is not None
    assert ns.root_of("/store/unmerged/x/a.root") is None
    assert ns.root_of("/other/a.root") is None


def test_the_first_preferred_protocol_that_maps_the_roots_is_chosen() -> None:
    m = mapper(
        file=[("/store/(.*)", "file:///srv/store/$1")],
        root=[("/store/(.*)", XRD)],
        davs=[("/store/(.*)", "davs://se.example/store/$1")],
    )
    assert Namespace.choose(m, ["gsiftp", "root", "file"], ["/store"]).protocol == "root"
    assert Namespace.choose(m, ["file", "root"], ["/store"]).protocol == "file"


def test_a_site_without_usable_rules_cannot_be_listed() -> None:
    with pytest.raises(NamespaceError, match="none of the protocols"):
        Namespace.choose(mapper(srm=[("/store/(.*)", "srm://x/$1")]), ["root"], ["/store"])
    with pytest.raises(NamespaceError, match="do not map /store"):
        Namespace.choose(mapper(root=[("/data/(.*)", XRD)]), ["root"], ["/store"])
    # A rule that renames the files themselves cannot be inverted by prefix.
    hashed = mapper(root=[("/store/(.*)", "root://se//data/$1.x")])
    with pytest.raises(NamespaceError, match="by prefix"):
        Namespace.choose(hashed, ["root"], ["/store"])
