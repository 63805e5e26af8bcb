"""How the `dynamo` command finds this service (entry point group ``dynamo.services``)."""

from dynamo_common.service_plugin import ServicePlugin
from dynamo_consistency.app import create_app
from dynamo_consistency.settings import ConsistencySettings

SERVICE = ServicePlugin(
    name="consistency", create_app=create_app, settings_class=ConsistencySettings, order=50
)
