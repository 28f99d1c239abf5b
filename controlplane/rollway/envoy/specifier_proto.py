"""The message of Envoy's dynamic-module cluster specifier, for the xDS encoder.

``envoy.extensions.router.cluster_specifiers.dynamic_modules.v3.DynamicModuleClusterSpecifier``
(Envoy 1.40) is newer than the envoy-data-plane release Rollway uses, so the route encoder
(betterproto2) could not pack it into a route's ``inline_cluster_specifier_plugin``. This
declares the fields Rollway sets, with their numbers from Envoy's
``api/envoy/extensions/router/cluster_specifiers/dynamic_modules/v3/dynamic_modules.proto``,
and registers the type, as envoy-data-plane's generated modules do. Importing the module is
what registers it. ``tests/xds`` decodes what it encodes and a real Envoy reads it.
"""

from __future__ import annotations

import betterproto2
from envoy_data_plane.envoy.extensions.dynamic_modules.v3 import DynamicModuleConfig
from envoy_data_plane.google.protobuf import Any
from envoy_data_plane.message_pool import default_message_pool
from pydantic.dataclasses import dataclass

PACKAGE = "envoy.extensions.router.cluster_specifiers.dynamic_modules.v3"
TYPE_URL = f"type.googleapis.com/{PACKAGE}.DynamicModuleClusterSpecifier"


@dataclass(eq=False, repr=False, config={"extra": "forbid"})
class DynamicModuleClusterSpecifier(betterproto2.Message):
    """The module, the name of the specifier inside it, and its config (Rollway's:
    ``{"service": NAME}`` as a StringValue)."""

    dynamic_module_config: DynamicModuleConfig | None = betterproto2.field(1, betterproto2.TYPE_MESSAGE,
                                                                             optional=True)
    specifier_name: str = betterproto2.field(2, betterproto2.TYPE_STRING)
    specifier_config: Any | None = betterproto2.field(3, betterproto2.TYPE_MESSAGE, optional=True)


default_message_pool.register_message(PACKAGE, "DynamicModuleClusterSpecifier", DynamicModuleClusterSpecifier)
