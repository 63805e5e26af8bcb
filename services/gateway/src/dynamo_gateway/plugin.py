"""How the `dynamo` command finds this service (entry point group ``dynamo.services``)."""

from dynamo_common.service_plugin import ServicePlugin
from dynamo_gateway.app import create_app
from dynamo_gateway.settings import GatewaySettings

# Last: in the standalone mode it is the front door of the services started before it.
SERVICE = ServicePlugin(
    name="gateway", create_app=create_app, settings_class=GatewaySettings, order=90
)
