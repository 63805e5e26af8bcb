"""The variables a condition can name, and where their values come from.

A variable belongs to a *level* (the object its value is a property of: a dataset, a dataset
replica, a block replica, a site, a site's partition, or nothing for the constants). The
*context* of a condition is the object it is evaluated on; the compiler navigates from that
object to the variable's level (a block replica's dataset is ``br.block.dataset``, a dataset
replica's block replicas are all of them: "any"). Keeping the two apart lets one definition
serve replica, block-replica and site conditions.

Values come from the inventory (an attribute path or a function of the level object) or, for
popularity, locks and other outside data, from an attribute provider that fills
``Attributes`` before a cycle. Later code extends ``REGISTRY`` (or a copy of it) with
``register``; nothing here needs to change for a new variable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from operator import attrgetter
from typing import Any, Protocol, runtime_checkable

from dynamo_common.messages.types import DatasetStatus, SiteStatus, StorageType
from dynamo_common.model.objects import (
    BlockReplica,
    Dataset,
    DatasetReplica,
    Group,
    Inventory,
    Site,
)

Getter = Callable[[Any], Any]


class VarType(StrEnum):
    TEXT = "text"
    ENUM = "enum"
    NUMBER = "number"
    TIME = "time"
    BOOL = "bool"


class Context(StrEnum):
    """What a condition is evaluated on: a ``DatasetReplica``, a ``BlockReplica``, or a
    ``SiteContext`` (a site seen through one partition)."""

    REPLICA = "replica"
    BLOCKREPLICA = "blockreplica"
    SITE = "site"


class Level(StrEnum):
    """The object a variable's value belongs to."""

    DATASET = "dataset"
    REPLICA = "replica"
    BLOCKREPLICA = "blockreplica"
    SITE = "site"
    SITE_PARTITION = "site_partition"
    CONSTANT = "constant"


_LEVEL_CONTEXTS: dict[Level, frozenset[Context]] = {
    Level.DATASET: frozenset({Context.REPLICA, Context.BLOCKREPLICA}),
    Level.REPLICA: frozenset({Context.REPLICA, Context.BLOCKREPLICA}),
    Level.BLOCKREPLICA: frozenset({Context.REPLICA, Context.BLOCKREPLICA}),
    Level.SITE: frozenset({Context.REPLICA, Context.BLOCKREPLICA, Context.SITE}),
    Level.SITE_PARTITION: frozenset({Context.SITE}),
    Level.CONSTANT: frozenset({Context.SITE}),
}


class OnTape(StrEnum):
    NONE = "none"
    PARTIAL = "partial"
    FULL = "full"


DATASET_STATUS_VALUES: Mapping[str, DatasetStatus] = {s.name: s for s in DatasetStatus}
SITE_STATUS_VALUES: Mapping[str, SiteStatus] = {s.name: s for s in SiteStatus}
# The language keeps Dynamo's historic name for tape storage.
STORAGE_TYPE_VALUES: Mapping[str, StorageType] = {
    "DISK": StorageType.DISK,
    "MSS": StorageType.TAPE,
    "BUFFER": StorageType.BUFFER,
}
ON_TAPE_VALUES: Mapping[str, OnTape] = {s.name: s for s in OnTape}


@dataclass(frozen=True, slots=True)
class Variable:
    """One variable of the language.

    Exactly one value source: ``attr`` (a dotted attribute path on the level object; the
    compiler fuses it with the navigation into one C-level ``attrgetter``), ``compute`` (a
    function of the level object), ``factory`` (makes such a function per binding, for getters
    that memoise), ``provider`` (looked up in the ``Attributes`` table ``attribute``), or the
    ``CONSTANT`` level (the value is ``default``).
    """

    name: str
    type: VarType
    level: Level
    doc: str = ""
    attr: str | None = None
    compute: Getter | None = None
    factory: Callable[[], Getter] | None = None
    provider: bool = False
    attribute: str = ""
    """Name of the ``Attributes`` table of a provider variable; defaults to ``name``."""
    default: Any = None
    """Value of a provider variable with no provider (or none for this object), the value of
    a constant, and the value when the navigation finds no object."""
    enum_values: Mapping[str, Any] = field(default_factory=dict)
    cost: int = 1
    """Relative evaluation cost: the compiler tests cheap predicates first."""
    depends_on: str | None = None
    """The attribute of the level object that alone determines the value, so callers may
    memoise on it (a block replica's owner depends only on its ``group``)."""
    contexts: frozenset[Context] = frozenset()

    def __post_init__(self) -> None:
        sources = sum(
            (
                self.attr is not None,
                self.compute is not None,
                self.factory is not None,
                self.provider,
                self.level is Level.CONSTANT,
            )
        )
        if sources != 1:
            raise ValueError(f"variable {self.name!r} needs exactly one value source")
        if self.type is VarType.ENUM and not self.enum_values:
            raise ValueError(f"enumerated variable {self.name!r} needs enum_values")
        if not self.attribute:
            object.__setattr__(self, "attribute", self.name)
        if not self.contexts:
            object.__setattr__(self, "contexts", _LEVEL_CONTEXTS[self.level])

    def available_in(self, context: Context) -> bool:
        return context in self.contexts

    def make_getter(self) -> Getter:
        """The value getter over the level object (not for providers or constants, whose
        values the compiler takes from the binding)."""
        if self.attr is not None:
            return attrgetter(self.attr)
        if self.compute is not None:
            return self.compute
        if self.factory is not None:
            return self.factory()
        raise TypeError(f"variable {self.name!r} has no inventory getter")


@runtime_checkable
class AttributeProvider(Protocol):
    """Fills the attribute tables of provider variables before a cycle (popularity, locks,
    tape requests, protected sites...). Outside data is fetched before ``fill`` (decisions are
    pure functions of the read model, the attributes and the clock); ``fill`` only writes the
    tables named in ``provides``."""

    name: str
    provides: frozenset[str]

    def fill(self, inventory: Inventory, attributes: Attributes, now: float) -> None: ...


class VariableRegistry:
    """Name -> ``Variable``, plus the attribute providers that feed provider variables. The
    parser resolves names here, so registering a variable is all it takes for policy files to
    use it."""

    def __init__(
        self, variables: Iterable[Variable] = (), providers: Iterable[AttributeProvider] = ()
    ) -> None:
        self._variables: dict[str, Variable] = {}
        self._providers: dict[str, AttributeProvider] = {}
        for variable in variables:
            self.register(variable)
        for provider in providers:
            self.register_provider(provider)

    def register(self, variable: Variable, *, replace: bool = False) -> Variable:
        if not replace and variable.name in self._variables:
            raise ValueError(f"variable {variable.name!r} is already registered")
        self._variables[variable.name] = variable
        return variable

    def get(self, name: str) -> Variable | None:
        return self._variables.get(name)

    def __getitem__(self, name: str) -> Variable:
        return self._variables[name]

    def __contains__(self, name: object) -> bool:
        return name in self._variables

    def __iter__(self) -> Iterator[Variable]:
        return iter(self._variables.values())

    def __len__(self) -> int:
        return len(self._variables)

    def names(self, context: Context | None = None) -> list[str]:
        return sorted(
            name
            for name, variable in self._variables.items()
            if context is None or variable.available_in(context)
        )

    def provider_variables(self) -> list[Variable]:
        return [v for v in self._variables.values() if v.provider]

    def register_provider(self, provider: AttributeProvider) -> None:
        tables = {v.attribute for v in self.provider_variables()}
        unknown = sorted(set(provider.provides) - tables)
        if unknown:
            raise ValueError(
                f"provider {provider.name!r} fills {', '.join(unknown)}, which no provider "
                "variable reads (register the variables first)"
            )
        if provider.name in self._providers:
            raise ValueError(f"provider {provider.name!r} is already registered")
        self._providers[provider.name] = provider

    def providers(self) -> list[AttributeProvider]:
        return list(self._providers.values())

    def unprovided_variables(self) -> list[str]:
        """Provider variables no registered provider fills: they keep their defaults."""
        provided = {table for p in self._providers.values() for table in p.provides}
        return sorted(v.name for v in self.provider_variables() if v.attribute not in provided)

    def fill_attributes(self, inventory: Inventory, now: float) -> Attributes:
        """Run every registered provider into fresh tables. Every table a provider declares
        exists afterwards, even empty, so 'provided, no value' differs from 'no provider'."""
        attributes = Attributes()
        for provider in self._providers.values():
            for table in provider.provides:
                attributes.provide(table)
            provider.fill(inventory, attributes, now)
        return attributes

    def copy(self) -> VariableRegistry:
        return VariableRegistry(self._variables.values(), self._providers.values())


class Attributes(dict[str, dict[Any, Any]]):
    """Values of provider variables: table name -> {level object: value}.

    Model objects hash by identity, so tables key on the objects themselves (a dataset, a
    dataset replica, a block replica, a site). A table that is absent means no provider ran
    for it: conditions take the documented default and can report the name
    (``Condition.missing_providers``). Bind conditions after the providers have filled the
    tables: an absent table is folded into a constant when a condition is bound.
    """

    def provide(self, name: str) -> dict[Any, Any]:
        """The table a provider fills for ``name`` (created empty: 'provided, no values')."""
        return self.setdefault(name, {})


class SiteContext:
    """A site seen through one partition: what site conditions (``On``, ``When``, ``Until``,
    enforcer sources and destinations) are evaluated on."""

    __slots__ = ("partition", "quota", "site", "used")

    def __init__(self, site: Site, partition: str = "", used: int = 0, quota: int = 0) -> None:
        self.site = site
        self.partition = partition
        self.used = used
        self.quota = quota

    @property
    def occupancy(self) -> float:
        return occupancy(self.used, self.quota)

    def __repr__(self) -> str:
        return f"SiteContext({self.site.name!r}, {self.partition!r}, {self.used}/{self.quota})"


def occupancy(used: int, quota: int) -> float:
    if quota > 0:
        return used / quota
    # No quota: any data at all is over it, so 'site.occupancy > x' triggers on it, and an
    # empty site with no quota is not over anything.
    return float("inf") if used > 0 else 0.0


# Inventory-derived values. These run per object per cycle, so they are plain loops (a
# generator expression costs a frame and a resumption per item).

_DISK = StorageType.DISK
_TAPE = StorageType.TAPE
_READY = SiteStatus.READY


def _dataset_on_tape(dataset: Dataset) -> OnTape:
    state = OnTape.NONE
    for replica in dataset.replicas.values():
        if replica.site.storage_type == _TAPE:
            if replica.is_complete:
                return OnTape.FULL
            state = OnTape.PARTIAL
    return state


def _dataset_num_full_disk_copy(dataset: Dataset) -> int:
    count = 0
    for replica in dataset.replicas.values():
        site = replica.site
        if site.storage_type == _DISK and site.status == _READY and replica.is_complete:
            count += 1
    return count


def _owners(replica: DatasetReplica) -> set[Group]:
    owners = {br.group for br in replica.block_replicas.values()}
    return owners or {replica.group}


def _replica_num_full_disk_copy_common_owner(replica: DatasetReplica) -> int:
    owners = _owners(replica)
    count = 0
    for other in replica.dataset.replicas.values():
        site = other.site
        if (
            site.storage_type == _DISK
            and site.status == _READY
            and other.is_complete
            and not owners.isdisjoint(_owners(other))
        ):
            count += 1
    return count


def _replica_num_full_other_copy_common_owner(replica: DatasetReplica) -> int:
    owners = _owners(replica)
    here = replica.site
    count = 0
    for other in replica.dataset.replicas.values():
        site = other.site
        if (
            site is not here
            and site.status == _READY
            and other.is_complete
            and not owners.isdisjoint(_owners(other))
        ):
            count += 1
    return count


def _replica_incomplete(replica: DatasetReplica) -> bool:
    return not replica.is_complete


def _replica_first_block_created(replica: DatasetReplica) -> float:
    # A replica with no block yet is as old as the replica itself.
    return min(
        (br.last_update for br in replica.block_replicas.values()), default=replica.last_update
    )


def _replica_last_block_created(replica: DatasetReplica) -> float:
    return max(
        (br.last_update for br in replica.block_replicas.values()), default=replica.last_update
    )


def _block_num_full_disk_copy(replica: BlockReplica) -> int:
    count = 0
    for other in replica.block.replicas:
        site = other.site
        if site.storage_type == _DISK and site.status == _READY and other.is_complete:
            count += 1
    return count


def _block_on_tape(replica: BlockReplica) -> bool:
    for other in replica.block.replicas:
        if other.site.storage_type == _TAPE and other.is_complete:
            return True
    return False


def _age_relative_to_newest_factory() -> Getter:
    # The newest block of a dataset is needed for every block replica of the dataset; without
    # the memo a replica context predicate ('any block replica ...') is quadratic in blocks.
    # The block count guards against blocks added while a binding lives.
    newest: dict[Dataset, tuple[int, float]] = {}

    def age(replica: BlockReplica) -> float:
        block = replica.block
        dataset = block.dataset
        cached = newest.get(dataset)
        if cached is None or cached[0] != len(dataset.blocks):
            latest = max((b.last_update for b in dataset.blocks.values()), default=0.0)
            cached = (len(dataset.blocks), latest)
            newest[dataset] = cached
        return cached[1] - block.last_update

    return age


def _provider(
    name: str,
    type: VarType,
    level: Level,
    default: Any,
    doc: str,
    *,
    attribute: str = "",
) -> Variable:
    return Variable(
        name, type, level, doc, provider=True, default=default, attribute=attribute, cost=1
    )


def default_variables() -> list[Variable]:
    """Every variable of POLICY_LANGUAGE.md."""
    V = Variable
    T = VarType
    L = Level
    return [
        # dataset.* (inventory)
        V("dataset.name", T.TEXT, L.DATASET, "dataset name", attr="name", default=""),
        V(
            "dataset.status",
            T.ENUM,
            L.DATASET,
            "dataset status",
            attr="status",
            enum_values=DATASET_STATUS_VALUES,
            default=DatasetStatus.UNKNOWN,
        ),
        V("dataset.size", T.NUMBER, L.DATASET, "bytes", attr="size", default=0),
        V("dataset.last_update", T.TIME, L.DATASET, "last change", attr="last_update", default=0.0),
        V(
            "dataset.on_tape",
            T.ENUM,
            L.DATASET,
            "whether a complete replica exists on a tape site",
            compute=_dataset_on_tape,
            enum_values=ON_TAPE_VALUES,
            default=OnTape.NONE,
            cost=3,
        ),
        V(
            "dataset.num_full_disk_copy",
            T.NUMBER,
            L.DATASET,
            "complete replicas on ready disk sites",
            compute=_dataset_num_full_disk_copy,
            default=0,
            cost=4,
        ),
        V(
            "dataset.release",
            T.TEXT,
            L.DATASET,
            "software release that produced it",
            attr="software_version",
            default="",
        ),
        # dataset.* (attribute providers)
        _provider("dataset.last_access", T.TIME, L.DATASET, 0.0, "last recorded access"),
        _provider("dataset.tape_copy_requested", T.BOOL, L.DATASET, False, "tape copy pending"),
        _provider("dataset.usage_rank", T.NUMBER, L.DATASET, 0, "low = in demand"),
        _provider("dataset.demand_rank", T.NUMBER, L.DATASET, 0, "global demand ranking"),
        _provider(
            "dataset.is_latest_production_release",
            T.BOOL,
            L.DATASET,
            False,
            "produced by the latest production release",
        ),
        _provider(
            "dataset.on_protected_site",
            T.BOOL,
            L.DATASET,
            False,
            "a replica sits on a site that operators protect",
        ),
        _provider(
            "dataset.unhandled_copy_exists",
            T.BOOL,
            L.DATASET,
            False,
            "a copy that Dynamo did not make is in flight",
        ),
        _provider(
            "dataset.unknown_in_all_dbs",
            T.BOOL,
            L.DATASET,
            False,
            "the metadata source no longer knows it",
        ),
        # replica.* (inventory)
        V(
            "replica.size",
            T.NUMBER,
            L.REPLICA,
            "bytes present at this site",
            attr="size",
            default=0,
            cost=2,
        ),
        V(
            "replica.incomplete",
            T.BOOL,
            L.REPLICA,
            "not all blocks or files are present yet",
            compute=_replica_incomplete,
            default=True,
            cost=2,
        ),
        V(
            "replica.first_block_created",
            T.TIME,
            L.REPLICA,
            "oldest block replica at this site",
            compute=_replica_first_block_created,
            default=0.0,
            cost=2,
        ),
        V(
            "replica.last_block_created",
            T.TIME,
            L.REPLICA,
            "newest block replica at this site",
            compute=_replica_last_block_created,
            default=0.0,
            cost=2,
        ),
        V(
            "replica.num_full_disk_copy_common_owner",
            T.NUMBER,
            L.REPLICA,
            "complete ready disk replicas whose owners share a group with this one",
            compute=_replica_num_full_disk_copy_common_owner,
            default=0,
            cost=5,
        ),
        V(
            "replica.num_full_other_copy_common_owner",
            T.NUMBER,
            L.REPLICA,
            "the same, excluding this site, any storage type",
            compute=_replica_num_full_other_copy_common_owner,
            default=0,
            cost=5,
        ),
        # replica.* (attribute providers)
        _provider(
            "replica.num_access", T.NUMBER, L.REPLICA, 0, "accesses in the popularity window"
        ),
        _provider(
            "replica.enforcer_protected",
            T.BOOL,
            L.REPLICA,
            False,
            "an enforcer rule with protect: true counts this replica",
        ),
        # blockreplica.* (inventory)
        V(
            "blockreplica.owner",
            T.TEXT,
            L.BLOCKREPLICA,
            "owning group, None when unowned",
            attr="group.name",
            default="None",
            depends_on="group",
        ),
        V(
            "blockreplica.last_update",
            T.TIME,
            L.BLOCKREPLICA,
            "last change of the block replica",
            attr="last_update",
            default=0.0,
        ),
        V(
            "blockreplica.num_full_disk_copy",
            T.NUMBER,
            L.BLOCKREPLICA,
            "complete replicas of the block on ready disk sites",
            compute=_block_num_full_disk_copy,
            default=0,
            cost=3,
        ),
        V(
            "blockreplica.on_tape",
            T.BOOL,
            L.BLOCKREPLICA,
            "a complete replica of the block is on a tape site",
            compute=_block_on_tape,
            default=False,
            cost=3,
        ),
        V(
            "blockreplica.age_relative_to_newest",
            T.NUMBER,
            L.BLOCKREPLICA,
            "seconds between this block's last update and the dataset's newest block's",
            factory=_age_relative_to_newest_factory,
            default=0.0,
            cost=2,
        ),
        # blockreplica.* (attribute providers)
        _provider("blockreplica.is_locked", T.BOOL, L.BLOCKREPLICA, False, "a lock covers it"),
        _provider(
            "blockreplica.is_last_transfer_source",
            T.BOOL,
            L.BLOCKREPLICA,
            False,
            "the only complete ready disk source of a transfer in flight",
        ),
        # Production policy files (Physics) still write the replica-level spelling of the
        # last-transfer-source flag; it reads the same provider table, 'any block replica'.
        _provider(
            "replica.is_last_transfer_source",
            T.BOOL,
            L.BLOCKREPLICA,
            False,
            "legacy spelling of blockreplica.is_last_transfer_source",
            attribute="blockreplica.is_last_transfer_source",
        ),
        # site.* of a replica's site, and of a site condition
        V("site.name", T.TEXT, L.SITE, "site name", attr="name", default=""),
        V(
            "site.status",
            T.ENUM,
            L.SITE,
            "site status",
            attr="status",
            enum_values=SITE_STATUS_VALUES,
            default=SiteStatus.READY,
        ),
        V(
            "site.storage_type",
            T.ENUM,
            L.SITE,
            "storage type",
            attr="storage_type",
            enum_values=STORAGE_TYPE_VALUES,
            default=StorageType.DISK,
        ),
        V(
            "site.occupancy",
            T.NUMBER,
            L.SITE_PARTITION,
            "partition usage / partition quota",
            attr="occupancy",
            default=0.0,
        ),
        V(
            "site.quota",
            T.NUMBER,
            L.SITE_PARTITION,
            "partition quota (bytes)",
            attr="quota",
            default=0,
        ),
        V("always", T.BOOL, L.CONSTANT, "true", default=True),
        V("never", T.BOOL, L.CONSTANT, "false", default=False),
    ]


REGISTRY = VariableRegistry(default_variables())
"""The registry ``parse_condition`` uses unless given another. Extend it with ``register``
(or work on ``REGISTRY.copy()`` to keep additions local)."""
