"""Schemathesis against the gateway's merged OpenAPI document: for every operation, requests
generated from the document (valid and invalid ones), sent as the admin through the gateway
to the real services, never get a server error.

The services in this stack are the landed ones whose APIs are stable (the inventory and the
transfer service) and the gateway's own; the others join this list when they settle. They
run with the gateway on real ports in an event loop of their own thread, since Schemathesis
calls synchronously.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import uuid
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from tests.integration.test_gateway_support import (
    ADMIN_TOKEN,
    gateway_settings,
    serve,
    stack_in_thread,
)
from tests.integration.test_transfer_support import transfer_settings

EXAMPLES = 12
# Server errors of the services behind the gateway (not of the gateway), reported to their
# owners. A failure of any other operation fails this test.
KNOWN_SERVICE_BUGS: dict[str, str] = {}
GENERATION = {
    # PostgreSQL text cannot hold NUL; the inventory accepts it in names and then fails to
    # store the command (reported; the inventory should refuse it with a 422). Generated
    # strings leave it out until then, so that this test watches everything else.
    "allow-x00": False,
}


def _run_stack(database_url: str, ready: queue.Queue[Any], stop: threading.Event) -> None:
    from dynamo_common.bus.memory import MemoryBus
    from dynamo_gateway.app import create_app as gateway_app
    from dynamo_inventory.app import create_app as inventory_app
    from dynamo_inventory.settings import InventorySettings
    from dynamo_transfer.app import create_app as transfer_app

    async def main() -> None:
        bus = MemoryBus(namespace=f"st{uuid.uuid4().hex[:8]}")
        await bus.connect()
        try:
            inventory = inventory_app(
                InventorySettings(
                    database_url=database_url,
                    amqp_url="memory://",
                    bus_namespace=bus.namespace,
                    log_format="console",
                    log_level="WARNING",
                ),
                bus=bus,
            )
            async with serve(inventory) as inventory_url:
                transfer = transfer_app(
                    transfer_settings(
                        database_url,
                        bus.namespace,
                        inventory_url=inventory_url,
                        log_level="WARNING",
                    ),
                    bus=bus,
                )
                async with serve(transfer) as transfer_url:
                    settings = gateway_settings(
                        database_url,
                        inventory_url=inventory_url,
                        transfer_url=transfer_url,
                        log_level="WARNING",
                        read_timeout=30.0,
                    )
                    async with serve(gateway_app(settings)) as url:
                        ready.put(url)
                        await asyncio.to_thread(stop.wait)
        finally:
            await bus.close()

    try:
        asyncio.run(main())
    except BaseException as exc:
        ready.put(exc)


@pytest.fixture(scope="module")
def gateway_url(postgres_url: str) -> Iterator[str]:
    from dynamo_common.testing.postgres import temporary_database

    with (
        temporary_database(postgres_url) as database_url,
        stack_in_thread(database_url, _run_stack) as url,
    ):
        yield url


def test_no_server_error_on_any_operation(gateway_url: str) -> None:
    # Operations are walked here rather than through schema.parametrize(): its lazy-fixture
    # form reaches into a pytest internal that pytest 9 no longer has.
    config = schemathesis.Config.from_dict({"generation": GENERATION})
    schema = schemathesis.openapi.from_url(f"{gateway_url}/openapi.json", config=config)
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    failures: list[str] = []
    known: set[str] = set()
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(mode))
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                derandomize=True,
                database=None,
            )
            def check(case: Any) -> None:
                case.call_and_validate(
                    base_url=gateway_url, headers=headers, checks=[not_a_server_error], timeout=60
                )

            try:
                check()
            except Unsatisfiable:
                pass  # no invalid request exists for this operation (negative mode)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:  # hypothesis reports several failures as a group
                if operation.label in KNOWN_SERVICE_BUGS:
                    known.add(operation.label)
                    continue
                failures.append(f"{operation.label} ({mode.value}): {str(exc)[:1500]}")
    assert operations > 35
    assert not failures, "\n\n".join(failures)
    for label in sorted(set(KNOWN_SERVICE_BUGS) - known):
        warnings.warn(f"{label} no longer fails: remove it from KNOWN_SERVICE_BUGS", stacklevel=1)
