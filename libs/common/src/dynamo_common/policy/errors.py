"""Errors of the policy language, each pinned to a file, a line and a column.

A policy file with any error is refused as a whole, so operators get every error at once
(``PolicyErrors``) instead of fixing them one submission at a time.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator


class PolicyError(Exception):
    """One error at ``file:line:column`` (both 1-based), printed the way compilers print them
    so editors and the web page can jump to the spot."""

    def __init__(self, message: str, *, file: str = "<string>", line: int = 1, column: int = 1):
        self.message = message
        self.file = file
        self.line = line
        self.column = column
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"

    def __repr__(self) -> str:
        return f"PolicyError({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PolicyError):
            return NotImplemented
        return (self.file, self.line, self.column, self.message) == (
            other.file,
            other.line,
            other.column,
            other.message,
        )

    def __hash__(self) -> int:
        return hash((self.file, self.line, self.column, self.message))


class PolicyErrors(Exception):
    """Every error found in one text, in line and column order."""

    def __init__(self, errors: Iterable[PolicyError]):
        ordered = sorted(errors, key=lambda e: (e.file, e.line, e.column))
        if not ordered:
            raise ValueError("PolicyErrors needs at least one error")
        self.errors: tuple[PolicyError, ...] = tuple(ordered)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(error) for error in self.errors)

    def __repr__(self) -> str:
        return f"PolicyErrors({len(self.errors)} errors)"

    def __iter__(self) -> Iterator[PolicyError]:
        return iter(self.errors)

    def __len__(self) -> int:
        return len(self.errors)
