"""A progress bar of volume done against total on stderr, for ``--wait``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

from dynamo_common.client.commands.base import err


class VolumeBar:
    def __init__(self, progress: Progress | None, description: str) -> None:
        self._progress = progress
        self._description = description
        self._task = progress.add_task(description, total=None) if progress else None

    def update(self, done: int, total: int, note: str = "") -> None:
        """``note`` follows the description (e.g. how many files are held)."""
        if self._progress is None or self._task is None:
            return
        self._progress.update(
            self._task,
            completed=done,
            total=max(total, 1),
            description=f"{self._description}{note}",
        )


@contextmanager
def volume_bar(description: str, *, shown: bool) -> Iterator[VolumeBar]:
    """A bar on stderr (none when not ``shown``, e.g. with ``--json``)."""
    if not shown:
        yield VolumeBar(None, description)
        return
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        DownloadColumn(binary_units=False),
        TimeElapsedColumn(),
        console=err(),
    )
    with progress:
        yield VolumeBar(progress, description)
