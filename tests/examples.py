"""Route maps several test modules share (imported by name: ``from examples import ROUTEMAP``)."""

ROUTEMAP = {
    "service": "web",
    "stages": [
        {"name": "canary", "weight": 1, "mode": "rolling", "serverset": "/discovery/web/canary"},
        {"name": "prod", "weight": 99, "mode": "rolling", "serverset": "/discovery/web/prod"},
    ],
}
