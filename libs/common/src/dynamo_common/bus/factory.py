"""Pick the bus implementation from the URL scheme (``DYNAMO_BUS_URL``)."""

from __future__ import annotations

from urllib.parse import urlsplit

from dynamo_common.bus.base import Bus

__all__ = ["create_bus"]


def create_bus(url: str, namespace: str) -> Bus:
    """``memory://`` -> in-process bus (standalone mode); ``amqp://``/``amqps://`` -> RabbitMQ."""
    scheme = urlsplit(url).scheme.lower()
    if scheme == "memory":
        # Imported lazily so the standalone mode never needs aio-pika loaded, and vice versa.
        from dynamo_common.bus.memory import MemoryBus

        return MemoryBus(namespace=namespace)
    if scheme in ("amqp", "amqps"):
        from dynamo_common.bus.rabbitmq import RabbitBus

        return RabbitBus(url, namespace=namespace)
    # Never echo credentials from the URL into an error message (it ends up in logs).
    raise ValueError(
        f"unsupported bus URL scheme {scheme + '://' if scheme else url[:20]!r}: expected "
        "memory:// (in-process bus) or amqp:// / amqps:// (RabbitMQ)"
    )
