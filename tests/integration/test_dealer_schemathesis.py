"""Schemathesis against the dealer's own OpenAPI document: for every operation, requests
generated from the document (valid and invalid ones), sent with a user header to the real
dealer (beside a real inventory, on real ports, in an event loop of their own thread, since
Schemathesis calls synchronously), never get a server error."""

from __future__ import annotations

import asyncio
import queue
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from tests.integration.test_dealer_support import dealer_settings
from tests.integration.test_gateway_support import serve, stack_in_thread

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

EXAMPLES = 15
# PostgreSQL text cannot hold NUL (the inventory's own schemathesis test leaves it out too).
GENERATION = {"allow-x00": False}


def _run_stack(database_url: str, ready: queue.Queue[Any], stop: threading.Event) -> None:
    async def main() -> None:
        from dynamo_common.bus.memory import MemoryBus
        from dynamo_dealer.app import create_app as dealer_app
        from dynamo_inventory.app import create_app as inventory_app
        from dynamo_inventory.settings import InventorySettings

        bus = MemoryBus(namespace=f"ds{uuid.uuid4().hex[:8]}")
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
                settings = dealer_settings(
                    database_url,
                    bus.namespace,
                    inventory_url=inventory_url,
                    log_level="WARNING",
                    command_reply_timeout=2,
                )
                async with serve(dealer_app(settings, bus=bus)) as url:
                    ready.put(url)
                    await asyncio.to_thread(stop.wait)
        finally:
            await bus.close()

    try:
        asyncio.run(main())
    except BaseException as exc:
        ready.put(exc)


@pytest.fixture(scope="module")
def dealer_url(postgres_url: str) -> Iterator[str]:
    from dynamo_common.testing.postgres import temporary_database

    with (
        temporary_database(postgres_url) as database_url,
        stack_in_thread(database_url, _run_stack) as url,
    ):
        yield url


def test_no_server_error_on_any_dealer_operation(dealer_url: str) -> None:
    import httpx

    # The read model must be loaded, or writes answer 503 (which is right, but tests less).
    deadline = 60.0
    while httpx.get(f"{dealer_url}/readyz").status_code != 200:
        deadline -= 0.2
        assert deadline > 0, "the dealer did not get ready"
        threading.Event().wait(0.2)
    config = schemathesis.Config.from_dict({"generation": GENERATION})
    schema = schemathesis.openapi.from_url(f"{dealer_url}/openapi.json", config=config)
    headers = {"X-Dynamo-User": "admin"}
    failures: list[str] = []
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
                    base_url=dealer_url, headers=headers, checks=[not_a_server_error], timeout=60
                )

            try:
                check()
            except Unsatisfiable:
                pass
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:
                failures.append(f"{operation.label} ({mode.value}): {str(exc)[:1500]}")
    assert operations >= 18
    assert not failures, "\n\n".join(failures)
