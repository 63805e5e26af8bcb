"""Dynamo gateway: the single public entry of the REST API."""
