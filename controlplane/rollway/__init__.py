"""Rollway: session-sticky routing for rolling deploys at the Envoy ingress.

The routing rules live in one place, the C++ core, exposed here from the private
``rollway._core`` extension::

    >>> import rollway
    >>> router = rollway.Router(open("envoy-config/filter-config.example.json").read())
    >>> d = router.route(None, now=1_700_000_000)      # a new browser: an id is minted
    >>> d.stage, d.version, d.new_routing_id is not None
    ('prod', 'v1', True)
"""

from rollway._core import (
    BatchDecisions,
    Decision,
    Router,
    murmur3_32,
    murmur3_128,
    new_routing_id,
    parse_routing_id,
)
from rollway.envoy.bootstrap import filter_library_path

__all__ = [
    "filter_library_path",
    "BatchDecisions",
    "Decision",
    "Router",
    "murmur3_32",
    "murmur3_128",
    "new_routing_id",
    "parse_routing_id",
]

__version__ = "0.1.0"
