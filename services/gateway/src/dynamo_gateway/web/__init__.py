"""The operators' web pages: one HTML shell per page, filled in the browser from the same public
REST API a script reads (``/api/v1/...`` through this gateway). Every asset, the chart library
included, is served from ``/static``: the machines may be offline."""

from dynamo_gateway.web.pages import STATIC_DIR, mount

__all__ = ["STATIC_DIR", "mount"]
