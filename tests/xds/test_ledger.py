"""The ACK ledger (rollway.xds.ledger), alone: what an Envoy was sent and ACKed, when it is
behind, stale, back, or unsubscribed, and what the control plane hears of it. Pure: no
stream, no Envoy; the clock is passed in where the ledger takes one."""

from __future__ import annotations

from rollway.xds.ledger import EMPTY_VERSION, AckLedger, EnvoyNode
from rollway.xds.resources import CLUSTER, ENDPOINT, EXTENSION


class Heard:
    """The control plane's side: every report batch the ledger sends."""

    def __init__(self):
        self.batches: list[tuple[str, dict]] = []

    def __call__(self, service, reports):
        self.batches.append((service, dict(reports)))

    def last(self, node_id):
        for _service, reports in reversed(self.batches):
            if node_id in reports:
                return reports[node_id]
        raise AssertionError(f"nothing heard of {node_id}")


def ledger(ack_timeout=30.0):
    heard = Heard()
    return AckLedger(heard, replica="r1", ack_timeout=ack_timeout), heard


def test_a_new_envoy_is_behind_until_it_acks_a_filter_config():
    book, heard = ledger()
    node = EnvoyNode("e1", "web", 10000)
    book.connect(node)
    assert not heard.last("e1").caught_up
    book.sent(node, EXTENSION, "x1", "n1", ("rollway",))
    book.acked(node, EXTENSION, "x1", frozenset({"prod/v1"}), 3)
    report = heard.last("e1")
    assert report.caught_up and report.knows == frozenset({"prod/v1"}) and report.generation == 3


def test_an_ack_of_an_older_version_leaves_it_behind():
    book, heard = ledger()
    node = EnvoyNode("e1", "web", 10000)
    book.connect(node)
    book.sent(node, CLUSTER, "c2", "n2", ())
    book.acked(node, CLUSTER, "c1")
    assert CLUSTER in node.behind
    book.acked(node, CLUSTER, "c2")
    assert CLUSTER not in node.behind


def test_a_nack_is_counted_and_a_silent_envoy_goes_stale_then_comes_back():
    book, heard = ledger(ack_timeout=30.0)
    node = EnvoyNode("e1", "web", 10000)
    book.connect(node)
    book.sent(node, EXTENSION, "x1", "n1", ("rollway",))
    book.nacked(node, EXTENSION, "bad config")
    assert node.nacks == 1 and book.nack_total == 1 and node.last_nack == "bad config"
    book.check_liveness(now=node.behind_since + 29)
    assert not node.stale
    book.check_liveness(now=node.behind_since + 31)
    assert node.stale.startswith("NACKed (bad config)") and heard.last("e1").stale
    book.sent(node, EXTENSION, "x2", "n2", ("rollway",))
    book.acked(node, EXTENSION, "x2", frozenset(), 4)
    assert not node.stale and not heard.last("e1").stale


def test_an_envoy_that_unsubscribes_from_eds_holds_no_endpoints_and_owes_no_ack():
    """Its last EDS cluster went: it asks for no endpoints (EDS is not a wildcard type). It
    must not stay behind for what it was sent before, or it would go stale for nothing."""
    book, heard = ledger()
    node = EnvoyNode("e1", "web", 10000)
    book.connect(node)
    book.sent(node, EXTENSION, "x1", "n1", ("rollway",))
    book.acked(node, EXTENSION, "x1", frozenset(), 1)
    book.sent(node, ENDPOINT, "e9", "n9", ())
    assert not node.caught_up
    book.unsubscribed(node, ENDPOINT)
    assert node.caught_up and node.acked[ENDPOINT] == EMPTY_VERSION and ENDPOINT not in node.sent
    assert heard.last("e1").versions[1] == EMPTY_VERSION    # what the deploy gate compares


def test_a_disconnected_envoy_is_stale_after_the_timeout_and_forgotten_after_twice_it():
    book, heard = ledger(ack_timeout=10.0)
    node = EnvoyNode("e1", "web", 10000)
    book.connect(node)
    book.disconnect(node)
    gone = node.disconnected_at
    book.check_liveness(now=gone + 11)
    assert node.stale.startswith("disconnected")
    book.check_liveness(now=gone + 21)
    assert "e1" not in book.nodes and heard.last("e1") is None


def test_a_reconnect_under_the_same_id_replaces_the_old_stream():
    book, heard = ledger()
    first, second = EnvoyNode("e1", "web", 10000), EnvoyNode("e1", "web", 10000)
    book.connect(first)
    book.connect(second)
    book.disconnect(first)              # the old stream ends after the new one started
    assert book.nodes[("web", "e1")] is second and second.disconnected_at is None
