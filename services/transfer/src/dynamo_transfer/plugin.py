"""How the `dynamo` command finds this service (entry point group ``dynamo.services``)."""

from dynamo_common.service_plugin import ServicePlugin
from dynamo_transfer.app import create_app
from dynamo_transfer.settings import TransferSettings

SERVICE = ServicePlugin(
    name="transfer", create_app=create_app, settings_class=TransferSettings, order=40
)
