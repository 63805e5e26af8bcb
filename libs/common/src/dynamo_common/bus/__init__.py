from dynamo_common.bus.base import (
    Bus,
    BusError,
    Delivery,
    ExchangeKind,
    Handler,
    QueueSpec,
    Reject,
    RequestTimeout,
    Subscription,
)

__all__ = [
    "Bus",
    "BusError",
    "Delivery",
    "ExchangeKind",
    "Handler",
    "QueueSpec",
    "Reject",
    "RequestTimeout",
    "Subscription",
]
