"""How the `dynamo` command finds this service (entry point group ``dynamo.services``)."""

from dynamo_common.service_plugin import ServicePlugin
from dynamo_inventory.app import create_app
from dynamo_inventory.settings import InventorySettings

SERVICE = ServicePlugin(
    name="inventory", create_app=create_app, settings_class=InventorySettings, order=0
)
