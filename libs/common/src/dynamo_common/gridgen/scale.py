"""Sizes of a synthetic grid: the presets of DESIGN.md section 7 and custom ones."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True, slots=True)
class Scale:
    """Target object counts. Sites, datasets, blocks and files are met exactly; dataset and
    block replicas closely (a dataset cannot have more replicas than there are eligible sites,
    nor a dataset replica more block replicas than the dataset has blocks)."""

    sites: int
    datasets: int
    blocks: int
    dataset_replicas: int
    block_replicas: int
    files: int
    name: str = "custom"

    def __post_init__(self) -> None:
        if self.sites < 1 or self.datasets < 1:
            raise ValueError("a grid needs at least one site and one dataset")
        if self.blocks < self.datasets:
            raise ValueError("every dataset needs at least one block: blocks >= datasets")
        if self.files < self.blocks:
            raise ValueError("every block needs at least one file: files >= blocks")
        if self.dataset_replicas < 0 or self.block_replicas < self.dataset_replicas:
            raise ValueError("every dataset replica holds at least one block replica")
        if self.dataset_replicas > self.datasets * self.sites:
            raise ValueError("more dataset replicas than (dataset, site) pairs")

    def times(self, factor: int, name: str | None = None) -> Scale:
        """This scale with every count but the sites multiplied by ``factor``."""
        return replace(
            self,
            datasets=self.datasets * factor,
            blocks=self.blocks * factor,
            dataset_replicas=self.dataset_replicas * factor,
            block_replicas=self.block_replicas * factor,
            files=self.files * factor,
            name=name or f"{self.name}x{factor}",
        )


TINY = Scale(
    sites=12,
    datasets=50,
    blocks=200,
    dataset_replicas=100,
    block_replicas=300,
    files=2_000,
    name="tiny",
)
CI = Scale(
    sites=100,
    datasets=3_000,
    blocks=20_000,
    dataset_replicas=6_000,
    block_replicas=30_000,
    files=600_000,
    name="ci",
)
TENTH = CI.times(10, "tenth")
CMS = CI.times(100, "cms")

SCALES: dict[str, Scale] = {s.name: s for s in (TINY, CI, TENTH, CMS)}


def get_scale(scale: Scale | str) -> Scale:
    """A preset by name (``tiny``, ``ci``, ``tenth``, ``cms``), or the scale itself."""
    if isinstance(scale, Scale):
        return scale
    try:
        return SCALES[scale]
    except KeyError:
        raise ValueError(f"unknown scale {scale!r}; presets: {', '.join(SCALES)}") from None
