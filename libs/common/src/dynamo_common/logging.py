"""Structured logging: JSON lines in production, a readable console format for developers.

Both structlog loggers and stdlib loggers (uvicorn, SQLAlchemy, aio-pika, ...) end up in one
handler on the root logger, so every line has the same shape and carries the context bound with
:func:`bind_log_context` (request id, correlation id, cycle id, ...). That context lives in
contextvars, so it follows a request or a message through every ``await`` and into tasks started
from it, and never leaks between concurrent requests.
"""

from __future__ import annotations

import logging
import sys
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal

import structlog
from structlog.typing import EventDict, Processor

__all__ = [
    "CORRELATION_ID_KEY",
    "REQUEST_ID_KEY",
    "bind_log_context",
    "configure_logging",
    "get_correlation_id",
    "get_logger",
    "get_request_id",
    "log_context",
    "new_request_id",
    "unbind_log_context",
]

REQUEST_ID_KEY = "request_id"
CORRELATION_ID_KEY = "correlation_id"

LogFormat = Literal["json", "console"]

# httpx logs every request at INFO; services calling each other would double their log volume.
_DEFAULT_LEVELS: Mapping[str, str] = {"httpx": "WARNING", "httpcore": "WARNING"}


class _DynamoHandler(logging.StreamHandler[Any]):
    """Marks the handler this module installs, so reconfiguring replaces it and nothing else."""


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.PositionalArgumentsFormatter(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]


def _drop_formatter_leftovers(_: Any, __: str, event_dict: EventDict) -> EventDict:
    # When another handler (pytest's capture, a library's) formatted the record first, it left
    # `message` and `asctime` on it, which ExtraAdder would otherwise copy as duplicates.
    event_dict.pop("message", None)
    event_dict.pop("asctime", None)
    return event_dict


def configure_logging(
    level: str | int = "INFO",
    fmt: LogFormat = "json",
    *,
    stream: Any = None,
    levels: Mapping[str, str | int] | None = None,
) -> None:
    """Route structlog and stdlib logging through one handler on the root logger.

    Safe to call more than once (tests, several apps in one process): the handler installed by
    an earlier call is replaced, and handlers installed by others (pytest's capture) are kept.
    ``levels`` sets per-logger levels, e.g. ``{"aiormq": "WARNING"}`` (httpx defaults to
    WARNING).
    """
    if isinstance(level, str):
        level = level.upper()
    renderer: Processor
    if fmt == "json":
        # structlog's JSON fallback renders what json cannot (UUID, Path, bytes) with repr, so a
        # log call never raises.
        renderer = structlog.processors.JSONRenderer(ensure_ascii=False)
        final: list[Processor] = [
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ]
    elif fmt == "console":
        out = stream if stream is not None else sys.stderr
        isatty = getattr(out, "isatty", None)
        colors = bool(isatty()) if callable(isatty) else False
        # Plain tracebacks: rich's highlights every source file in the stack (pygments over
        # all 5,000 lines of fastapi/applications.py), which costs seconds per exception.
        renderer = structlog.dev.ConsoleRenderer(
            colors=colors, exception_formatter=structlog.dev.plain_traceback
        )
        final = [structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer]
    else:
        raise ValueError(f"unknown log format {fmt!r}; use 'json' or 'console'")

    shared = _shared_processors()
    foreign: list[Processor] = [*shared, structlog.stdlib.ExtraAdder(), _drop_formatter_leftovers]
    formatter = structlog.stdlib.ProcessorFormatter(foreign_pre_chain=foreign, processors=final)
    # stderr: CLI commands print their results on stdout, which must stay machine-readable.
    handler = _DynamoHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(formatter)

    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _DynamoHandler)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level)

    # uvicorn installs its own handlers when it configures logging; without this its lines would
    # be printed twice and in a different shape.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lib_logger = logging.getLogger(name)
        lib_logger.handlers.clear()
        lib_logger.propagate = True
    for name, lib_level in {**_DEFAULT_LEVELS, **(levels or {})}.items():
        logging.getLogger(name).setLevel(
            lib_level.upper() if isinstance(lib_level, str) else lib_level
        )

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached: module-level loggers created before a reconfiguration (tests, `dynamo up`
        # reading its settings late) must follow the new configuration.
        cache_logger_on_first_use=False,
    )


def get_logger(name: str | None = None, **initial: Any) -> structlog.stdlib.BoundLogger:
    """A structlog logger bound to the stdlib logger ``name``."""
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name, **initial)
    return logger


def new_request_id() -> str:
    return uuid.uuid4().hex


def bind_log_context(**values: Any) -> None:
    """Add ``values`` to every log line of the current context (task, request, message)."""
    structlog.contextvars.bind_contextvars(**values)


def unbind_log_context(*keys: str) -> None:
    structlog.contextvars.unbind_contextvars(*keys)


@contextmanager
def log_context(**values: Any) -> Iterator[None]:
    """Bind ``values`` for the duration of a ``with`` block and restore the previous ones after.

    ``None`` values are left out, so ``log_context(correlation_id=envelope.correlation_id)``
    works whether or not the message has one.
    """
    present = {k: v for k, v in values.items() if v is not None}
    with structlog.contextvars.bound_contextvars(**present):
        yield


def get_request_id() -> str | None:
    value = structlog.contextvars.get_contextvars().get(REQUEST_ID_KEY)
    return value if isinstance(value, str) else None


def get_correlation_id() -> str | None:
    """The correlation id of the current context, falling back to the request id.

    A command published while handling an HTTP request is correlated with that request.
    """
    context = structlog.contextvars.get_contextvars()
    value = context.get(CORRELATION_ID_KEY) or context.get(REQUEST_ID_KEY)
    return value if isinstance(value, str) else None
