"""The one validation of a route map, used everywhere one enters: ``routemap validate
--local``, the operator API's Validate, Push and Rollback, and every record the control
plane reads from its store (at start, and each refresh). Whatever it accepts, the control
plane can store and serve; whatever it refuses (``RouteMapError`` naming the field) nothing
stores, and a stored record it refuses is reported and skipped, never served.

It is ``parse_routemap`` (the document's shape, bounds and names) and then the routing
core's own acceptance of the filter config the map produces, so a map the core would
refuse at publication is refused before it is stored.

Usage::

    routemap = check_routemap(text_or_document)   # RouteMap, or RouteMapError
"""

from __future__ import annotations

from typing import Any

from rollway import Router
from rollway.model.publication import build_filter_config
from rollway.model.routemap import RouteMap, RouteMapError, parse_routemap

STAND_IN_KEY = b"x" * 32   # signing keys live outside the config: the shape is checked with this


def check_routemap(text: str | bytes | dict[str, Any]) -> RouteMap:
    routemap = parse_routemap(text)
    config = build_filter_config(routemap, {}, {}, 1, None)
    secrets = {}
    if "signing_key_id" in routemap.routing_id:
        secrets[routemap.routing_id["signing_key_id"]] = STAND_IN_KEY
    if routemap.override:
        secrets[routemap.override["key_id"]] = STAND_IN_KEY
    try:
        Router(config.to_text(), secrets=secrets)
    except ValueError as error:
        raise RouteMapError(f"filter config: {error}") from None
    return routemap


__all__ = ["RouteMapError", "check_routemap"]
