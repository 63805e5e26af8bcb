"""Validated scalar types shared by the contracts: names, LFNs, sizes, checksums.

Validation lives in the contract so a malformed command is refused before any service looks at
it, with the same message whether it came over the bus or through REST.
"""

from __future__ import annotations

import posixpath
import re
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints

SITE_NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,99}$"
GROUP_NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_\-.]{0,99}$"
# /Primary/Processed/TIER: three non-empty path components, no whitespace.
DATASET_NAME_RE = r"^/[^/\s]+/[^/\s]+/[^/\s]+$"
BLOCK_NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_\-.:]{0,127}$"
PARTITION_NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_\-.]{0,99}$"
CONTAINER_NAME_RE = r"^[A-Za-z0-9/][A-Za-z0-9_\-./]{0,254}$"

SiteName = Annotated[str, StringConstraints(pattern=SITE_NAME_RE)]
GroupName = Annotated[str, StringConstraints(pattern=GROUP_NAME_RE)]
DatasetName = Annotated[str, StringConstraints(pattern=DATASET_NAME_RE, max_length=500)]
BlockName = Annotated[str, StringConstraints(pattern=BLOCK_NAME_RE)]
PartitionName = Annotated[str, StringConstraints(pattern=PARTITION_NAME_RE)]
ContainerName = Annotated[str, StringConstraints(pattern=CONTAINER_NAME_RE)]
Size = Annotated[int, Field(ge=0, le=2**62)]
Count = Annotated[int, Field(ge=0, le=2**31)]
EntityId = Annotated[int, Field(ge=1)]


_BAD_LFN_CHAR = re.compile(r"[\s\x00-\x1f\x7f]")


def _check_lfn(value: str) -> str:
    # An LFN is the namespace-relative name every site maps to a PFN; one that is not absolute
    # and normalised could escape the site's namespace once mapped (../../etc/passwd).
    if not value.startswith("/"):
        raise ValueError("an LFN must be an absolute path starting with '/'")
    if any(part in ("..", ".") for part in value.split("/")):
        raise ValueError("an LFN must not contain '.' or '..' components")
    if posixpath.normpath(value) != value or "//" in value:
        raise ValueError("an LFN must be a normalised path (no '//' and no trailing '/')")
    if _BAD_LFN_CHAR.search(value):
        raise ValueError("an LFN must not contain whitespace or control characters")
    return value


LFN = Annotated[str, StringConstraints(min_length=2, max_length=1024), AfterValidator(_check_lfn)]

_ADLER_RE = re.compile(r"^[0-9a-f]{8}$")


def _check_adler32(value: str) -> str:
    lowered = value.lower()
    if not _ADLER_RE.match(lowered):
        raise ValueError("adler32 must be 8 hexadecimal digits")
    return lowered


Adler32 = Annotated[str, AfterValidator(_check_adler32)]
Crc32 = Annotated[int, Field(ge=0, le=0xFFFFFFFF)]


class StorageType(StrEnum):
    DISK = "disk"
    TAPE = "tape"
    BUFFER = "buffer"


class SiteStatus(StrEnum):
    READY = "ready"
    WAITROOM = "waitroom"
    MORGUE = "morgue"


class DatasetStatus(StrEnum):
    VALID = "valid"
    PRODUCTION = "production"
    INVALID = "invalid"
    DEPRECATED = "deprecated"
    DELETED = "deleted"
    IGNORED = "ignored"
    UNKNOWN = "unknown"


class OwnershipLevel(StrEnum):
    DATASET = "dataset"
    BLOCK = "block"


NO_GROUP = "None"
"""The name of the group that owns unowned replicas (Dynamo's convention)."""
