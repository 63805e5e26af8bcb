"""How the `dynamo` command finds this service (entry point group ``dynamo.services``)."""

from dynamo_common.service_plugin import ServicePlugin
from dynamo_dealer.app import create_app
from dynamo_dealer.settings import DealerSettings

SERVICE = ServicePlugin(
    name="dealer", create_app=create_app, settings_class=DealerSettings, order=35
)
