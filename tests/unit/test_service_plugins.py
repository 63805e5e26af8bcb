"""The `dynamo` command finds services through their entry points."""

from __future__ import annotations

from dynamo_common import service_plugin


def test_a_service_loads_by_name_without_importing_the_others() -> None:
    plugin = service_plugin.load("inventory")
    assert plugin is not None and plugin.name == "inventory"


def test_an_unknown_service_is_none_and_the_installed_names_say_what_exists() -> None:
    assert service_plugin.load("no-such-service") is None
    assert {"inventory", "transfer", "detox", "consistency", "gateway"} <= set(
        service_plugin.installed()
    )


def test_the_inventory_starts_first_because_every_other_service_reads_it() -> None:
    assert next(iter(service_plugin.discover())) == "inventory"
