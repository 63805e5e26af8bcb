"""Who may do what on the dealer's API, as the gateway's permission table says: reads are
reads; users ask for copies and cancel (the dealer then checks they are theirs); operators
run cycles and manage subscriptions."""

from __future__ import annotations

import pytest

from dynamo_gateway.service.permissions import PermissionTable
from dynamo_gateway.service.roles import Role

TABLE = PermissionTable(public_reads=True)


@pytest.mark.parametrize(
    ("method", "path", "need"),
    [
        ("GET", "/api/v1/dealer/requests", Role.ANONYMOUS),
        ("GET", "/api/v1/dealer/requests/7", Role.ANONYMOUS),
        ("GET", "/api/v1/dealer/cycles/3/decisions", Role.ANONYMOUS),
        ("GET", "/api/v1/dealer/monitoring/replicas", Role.ANONYMOUS),
        ("GET", "/api/v1/dealer/compliance", Role.ANONYMOUS),
        ("POST", "/api/v1/dealer/requests", Role.USER),
        ("POST", "/api/v1/dealer/requests/7/cancel", Role.USER),
        ("POST", "/api/v1/dealer/deletion-requests", Role.USER),
        ("POST", "/api/v1/dealer/deletion-requests/3/cancel", Role.USER),
        ("GET", "/api/v1/dealer/deletion-requests/3", Role.ANONYMOUS),
        ("POST", "/api/v1/dealer/subscriptions", Role.OPERATOR),
        ("DELETE", "/api/v1/dealer/subscriptions/4", Role.OPERATOR),
        ("POST", "/api/v1/dealer/cycles", Role.OPERATOR),
    ],
)
def test_each_dealer_endpoint_needs_its_role(method: str, path: str, need: Role) -> None:
    decision = TABLE.decide(method, path)
    assert decision.explicit
    assert decision.need is need


def test_an_unlisted_dealer_write_is_for_admins_only() -> None:
    decision = TABLE.decide("PUT", "/api/v1/dealer/requests/7")
    assert not decision.explicit and decision.need is Role.ADMIN
