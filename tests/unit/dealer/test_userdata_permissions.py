"""Who may call the user data endpoints, as the gateway's permission table says: any signed-in
user writes (the dealer then checks the data is theirs, or that they are an admin); reads are
reads."""

from __future__ import annotations

import pytest

from dynamo_gateway.service.permissions import PermissionTable
from dynamo_gateway.service.roles import Role

TABLE = PermissionTable(public_reads=True)
U = "/api/v1/dealer/userdata"


@pytest.mark.parametrize(
    ("method", "path", "need"),
    [
        ("POST", f"{U}/datasets", Role.USER),
        ("POST", f"{U}/inject", Role.USER),
        ("POST", f"{U}/import", Role.USER),
        ("POST", f"{U}/complete", Role.USER),
        ("POST", f"{U}/subscribe", Role.USER),
        ("POST", f"{U}/delete", Role.USER),
        ("GET", f"{U}/datasets", Role.ANONYMOUS),
        ("GET", f"{U}/dataset", Role.ANONYMOUS),
        ("GET", f"{U}/files", Role.ANONYMOUS),
        ("GET", f"{U}/quota", Role.ANONYMOUS),
    ],
)
def test_each_user_data_endpoint_needs_its_role(method: str, path: str, need: Role) -> None:
    decision = TABLE.decide(method, path)
    assert decision.explicit
    assert decision.need is need


def test_an_unlisted_user_data_write_is_for_admins_only() -> None:
    decision = TABLE.decide("PUT", f"{U}/datasets")
    assert not decision.explicit and decision.need is Role.ADMIN
