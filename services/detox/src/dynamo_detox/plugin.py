"""How the `dynamo` command finds this service (entry point group ``dynamo.services``)."""

from dynamo_common.service_plugin import ServicePlugin
from dynamo_detox.app import create_app
from dynamo_detox.settings import DetoxSettings

SERVICE = ServicePlugin(name="detox", create_app=create_app, settings_class=DetoxSettings, order=30)
