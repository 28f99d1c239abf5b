"""What the fleet knows, counted per key so that an ACK costs O(keys it changes).

Each Envoy in the quorum contributes the set of keys its ACKed filter config holds
(``rollway.model.admission.known_versions``). ``all_know(key)`` is then one dictionary
look-up: the number of quorum Envoys knowing the key against the quorum's size. An Envoy
outside the quorum (stale: silent, NACKing, lagging beyond the ACK timeout) counts for
nothing until it ACKs again.

Usage::

    fleet = FleetKnowledge()
    fleet.update("envoy-a", known_versions(config), in_quorum=True)
    fleet.all_know(("prod", "v2"))
"""

from __future__ import annotations

from collections import Counter

from rollway.model.admission import Key


class FleetKnowledge:
    def __init__(self) -> None:
        self.knows: dict[str, frozenset[Key]] = {}     # Envoy in the quorum -> keys it holds
        self.counts: Counter[Key] = Counter()
        # Times a key became known to every Envoy in the quorum (an Envoy learning it, or the
        # last one lacking it leaving): only then can a decision waiting for the fleet move.
        self.completions = 0

    def __len__(self) -> int:
        return len(self.knows)

    def update(self, envoy: str, knows: frozenset[Key] | set[Key], in_quorum: bool = True) -> bool:
        """Records what ``envoy`` holds; returns whether anything counted changed."""
        if not in_quorum:
            return self.remove(envoy)
        knows = frozenset(knows)
        old = self.knows.get(envoy)
        if old == knows:
            return False
        self.knows[envoy] = knows
        if old is None:
            self.counts.update(knows)
        else:
            learned = knows - old
            self.counts.update(learned)
            self.counts.subtract(old - knows)
            for key in old - knows:
                if self.counts[key] <= 0:
                    del self.counts[key]
            size = len(self.knows)
            if any(self.counts[key] >= size for key in learned):
                self.completions += 1
        return True

    def remove(self, envoy: str) -> bool:
        old = self.knows.pop(envoy, None)
        if old is None:
            return False
        self.counts.subtract(old)
        for key in old:
            if self.counts[key] <= 0:
                del self.counts[key]
        size = len(self.knows)
        if any(count >= size for key, count in self.counts.items() if key not in old):   # it was the last lacking them
            self.completions += 1
        return True

    def all_know(self, key: Key) -> bool:
        return self.counts.get(key, 0) >= len(self.knows)


class _Nobody:
    """A fleet that knows nothing: a leader that may not release anything yet."""

    def all_know(self, key: Key) -> bool:
        return False


NOBODY = _Nobody()
