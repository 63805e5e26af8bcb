"""Where a site's files are listed, and how a listed PFN becomes an LFN again.

A site is listed from a few root directories of the LFN namespace (``/store``). The PFN of a
root is found through the site's own rules, and every entry below it is turned back into an
LFN by swapping the PFN prefix for the LFN prefix. That inversion only holds where the rules
map a whole directory tree by prefix, which is what trivial-file-catalogue rules do in
practice; :class:`Namespace` checks it for every directory that holds inventory files, and
files where it does not hold are left out of the comparison rather than misreported.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from dynamo_common.storage.pfn import PfnError, PfnMapper

__all__ = ["ListingRoot", "Namespace", "NamespaceError", "PrefixSet", "parent_dirs"]

_PROBE = "dynamo-consistency-probe"


class NamespaceError(Exception):
    """The site cannot be listed: no usable protocol, or a root its rules do not map."""


def parent_dirs(path: str) -> Iterator[str]:
    """``/a/b/c`` -> ``/a/b``, ``/a`` (never ``/`` itself)."""
    end = path.rfind("/")
    while end > 0:
        path = path[:end]
        yield path
        end = path.rfind("/")


class PrefixSet:
    """A set of directories; :meth:`covers` tells whether a path lies at or below one.

    Looking a path's parents up in a hash set costs one probe per path component, whatever
    the number of directories, which matters when a large failed directory leaves a hundred
    thousand inventory files to be tested.
    """

    __slots__ = ("_dirs", "_everything")

    def __init__(self, dirs: Iterable[str] = ()) -> None:
        cleaned = {d.rstrip("/") for d in dirs}
        # "/" stripped is "": a set holding the root covers every path.
        self._everything = "" in cleaned
        self._dirs = frozenset(cleaned - {""})

    def __bool__(self) -> bool:
        return self._everything or bool(self._dirs)

    def __len__(self) -> int:
        return len(self._dirs) + self._everything

    def covers(self, path: str) -> bool:
        if self._everything:
            return True
        dirs = self._dirs
        if not dirs:
            return False
        if path in dirs:
            return True
        return any(parent in dirs for parent in parent_dirs(path))


@dataclass(frozen=True, slots=True)
class ListingRoot:
    lfn: str  # e.g. /store
    pfn: str  # e.g. root://host:1094//data/store

    def to_lfn(self, pfn: str) -> str | None:
        """The LFN of a PFN found below this root, or None when it is not below it."""
        root = self.pfn
        if not pfn.startswith(root):
            return None
        rest = pfn[len(root) :]
        if rest and not rest.startswith("/"):
            return None  # .../store2 is not below .../store
        return self.lfn + rest

    def pfn_of(self, lfn: str) -> str:
        return self.pfn + lfn[len(self.lfn) :]


class Namespace:
    """The listing roots of one site for one protocol, and the LFN <-> PFN inversion."""

    def __init__(self, mapper: PfnMapper, protocol: str, roots: Sequence[str]) -> None:
        self.mapper = mapper
        self.protocol = protocol
        listing: list[ListingRoot] = []
        for raw in roots:
            root = "/" + raw.strip("/")
            try:
                probe = mapper.lfn_to_pfn(f"{root}/{_PROBE}", protocol)
            except PfnError as exc:
                raise NamespaceError(
                    f"site {mapper.site}: the {protocol!r} rules do not map {root}: {exc}"
                ) from None
            if not probe.endswith("/" + _PROBE):
                raise NamespaceError(
                    f"site {mapper.site}: the {protocol!r} rules do not map {root} by prefix "
                    f"({root}/{_PROBE} -> {probe})"
                )
            listing.append(ListingRoot(root, probe[: -len(_PROBE) - 1]))
        # Deepest first, so a root nested in another claims its own files.
        self.roots = sorted(listing, key=lambda r: len(r.lfn), reverse=True)
        self._prefixes = [(r.lfn + "/", r) for r in self.roots]
        self._dir_ok: dict[str, bool] = {}

    @classmethod
    def choose(
        cls, mapper: PfnMapper, preference: Sequence[str], roots: Sequence[str]
    ) -> Namespace:
        """With the first protocol of ``preference`` the site has and whose rules map every
        root."""
        errors: list[str] = []
        for protocol in preference:
            if not mapper.has_protocol(protocol):
                continue
            try:
                return cls(mapper, protocol, roots)
            except NamespaceError as exc:
                errors.append(str(exc))
        if not errors:
            raise NamespaceError(
                f"site {mapper.site} has none of the protocols {', '.join(preference)} "
                f"(it has: {', '.join(mapper.protocols) or 'none'})"
            )
        raise NamespaceError("; ".join(errors))

    def root_of(self, lfn: str) -> ListingRoot | None:
        """The root whose listing shows ``lfn`` under its own name, or None when the file is
        outside every root or the site's rules put it somewhere else.

        The rules are evaluated once per directory: a catalogue that maps the files of one
        directory to different places is not one any site uses.
        """
        root = next((r for prefix, r in self._prefixes if lfn.startswith(prefix)), None)
        if root is None:
            return None
        directory = lfn[: lfn.rfind("/")]
        ok = self._dir_ok.get(directory)
        if ok is None:
            try:
                ok = self.mapper.lfn_to_pfn(lfn, self.protocol) == root.pfn_of(lfn)
            except PfnError:
                ok = False
            self._dir_ok[directory] = ok
        return root if ok else None
