"""Route maps several test modules share (imported by name: ``from examples import ROUTEMAP``)."""

ROUTEMAP = {
    "service": "web",
    "stages": [
        {"name": "canary", "weight": 1, "mode": "rolling", "serverset": "/discovery/web/canary"},
        {"name": "prod", "weight": 99, "mode": "rolling", "serverset": "/discovery/web/prod"},
    ],
}

# One edge, many apps (issue 27): web on its domain, admin under /admin on the same domain,
# api on its own; the static and the ADS tests of an Envoy fronting several share them.
EDGE_ROUTEMAPS = {
    "web": {"service": "web", "domains": ["www.example.test"],
            "stages": [{"name": "prod", "weight": 1, "mode": "rolling", "serverset": "/d/web"}]},
    "admin": {"service": "admin", "domains": ["www.example.test"], "path_prefix": "/admin",
              "stages": [{"name": "prod", "weight": 1, "mode": "rolling", "serverset": "/d/admin"}]},
    "api": {"service": "api", "domains": ["api.example.test"],
            "stages": [{"name": "prod", "weight": 1, "mode": "rolling", "serverset": "/d/api"}]},
}
