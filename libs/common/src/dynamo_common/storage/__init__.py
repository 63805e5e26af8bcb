"""Storage access for the transfer and consistency services (DESIGN.md section 5).

``open_storage()`` gives a :class:`Storage`: gfal2 (every grid protocol) when it is installed,
else plain ``file://`` access in pure Python for bare laptops in standalone mode. PFNs come from
LFNs through a site's rules (:class:`PfnMapper`).
"""

from __future__ import annotations

from typing import Literal

from dynamo_common.logging import get_logger
from dynamo_common.storage.base import (
    AlreadyExists,
    ChecksumMismatch,
    Entry,
    FailedDir,
    Listing,
    NotEmpty,
    NotFound,
    PermissionDenied,
    SizeMismatch,
    Stat,
    Storage,
    StorageError,
    Unavailable,
    UnsupportedProtocol,
    error_from_code,
    join_pfn,
)
from dynamo_common.storage.pfn import InvalidLfn, NoMapping, NoProtocol, PfnError, PfnMapper
from dynamo_common.storage.posix import PosixStorage, adler32_of_file

__all__ = [
    "AlreadyExists",
    "ChecksumMismatch",
    "Entry",
    "FailedDir",
    "InvalidLfn",
    "Listing",
    "NoMapping",
    "NoProtocol",
    "NotEmpty",
    "NotFound",
    "PermissionDenied",
    "PfnError",
    "PfnMapper",
    "PosixStorage",
    "SizeMismatch",
    "Stat",
    "Storage",
    "StorageError",
    "Unavailable",
    "UnsupportedProtocol",
    "adler32_of_file",
    "error_from_code",
    "join_pfn",
    "open_storage",
]

log = get_logger(__name__)


def open_storage(prefer: Literal["gfal", "posix"] = "gfal", *, max_parallel: int = 16) -> Storage:
    """A :class:`Storage`: gfal2 when ``prefer="gfal"`` and gfal2 imports, else file:// only.

    ``max_parallel`` bounds concurrent gfal2 operations (each holds a thread).
    """
    if prefer not in ("gfal", "posix"):
        raise ValueError(f"prefer must be 'gfal' or 'posix', not {prefer!r}")
    if prefer == "gfal":
        from dynamo_common.storage.gfal import GfalStorage

        try:
            storage: Storage = GfalStorage(max_parallel=max_parallel)
        except ImportError as exc:
            log.warning(
                "storage.backend",
                backend="posix",
                reason=f"gfal2 is not importable ({exc}); only file:// PFNs will work",
            )
        else:
            log.info("storage.backend", backend="gfal2")
            return storage
    else:
        log.info("storage.backend", backend="posix", reason="requested")
    return PosixStorage()
