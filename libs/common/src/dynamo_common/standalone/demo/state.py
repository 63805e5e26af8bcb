"""What the demo remembers about an instance, in ``<data_dir>/demo.json``: whether it seeded
the grid (completely, or was interrupted and must finish), so a second start never seeds again
and an interrupted one resumes."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

__all__ = ["DemoState", "DemoStateError", "load_state", "save_state"]

_FILE = "demo.json"


class DemoStateError(ValueError):
    """``demo.json`` exists but cannot be read; the message says which file and why."""


@dataclass(frozen=True, slots=True)
class DemoState:
    phase: Literal["seeding", "seeded"]
    seed: int
    datasets: int
    staged: bool = False
    """The scenes played once per instance (a file removed by hand, a subscription) are done."""


def load_state(data_dir: Path) -> DemoState | None:
    path = data_dir / _FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if raw["phase"] not in ("seeding", "seeded"):
            raise ValueError(f"unknown phase {raw['phase']!r}")
        return DemoState(
            phase=raw["phase"],
            seed=int(raw["seed"]),
            datasets=int(raw["datasets"]),
            staged=bool(raw.get("staged", False)),
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DemoStateError(
            f"{path} is not a demo state file ({exc}); remove it to start over"
        ) from exc


def save_state(data_dir: Path, state: DemoState) -> None:
    """Write atomically: a crash leaves the old state or the new one, never half of one."""
    path = data_dir / _FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(state)) + "\n", encoding="utf-8")
    os.replace(tmp, path)
