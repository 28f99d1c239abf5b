"""When a serverset's members become its view, as pure policies: the debounce window and
the empty-serverset grace. ``ServersetWatcher`` runs them on timers; the simulator
(``rollway.tools.sim``) calls them on its clock. One rule each, so the simulator's zeros
hold for the code that runs.

Usage::

    window = DebounceWindow(debounce=0.05)
    if window.notice(now):            # the first change of a batch opens the window
        arm_a_timer(window.debounce)  # ... whose expiry takes the latest members
    grace = EmptyGrace(30.0)
    left = grace.hold_for(shown_members=4, fresh_members=0, now=now)
    # left is None: show the fresh view; else keep showing the last one, look again in `left` s
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DebounceWindow:
    """Member changes are batched: the first change opens a window of ``debounce`` seconds,
    later ones join it, and the members as they are when it closes become the view. Why:
    a deploy step moves many hosts within milliseconds, and each view is a decision."""
    debounce: float
    closes_at: float | None = None

    @property
    def open(self) -> bool:
        return self.closes_at is not None

    def notice(self, now: float) -> bool:
        """A change; True when it opened the window (the caller then waits ``debounce``)."""
        if self.closes_at is None:
            self.closes_at = now + self.debounce
            return True
        return False

    def close(self, now: float) -> bool:
        """Whether the window is due now; it is closed if so."""
        if self.closes_at is not None and now >= self.closes_at:
            self.closes_at = None
            return True
        return False

    def expire(self) -> None:
        """The window's own timer fired: it is closed, whatever the clock says."""
        self.closes_at = None


@dataclass
class EmptyGrace:
    """A serverset that goes from members to none is not believed for ``grace`` seconds:
    the last view is shown meanwhile. Why: a ZooKeeper session blip or a deploy tool's bug
    empties a serverset far more often than a whole stage really goes away, and an empty
    view would send every session of the stage elsewhere at once."""
    grace: float
    since: float | None = None      # holding since then
    holds: int = 0                  # holds started (reported as suspicious empties)

    @property
    def holding(self) -> bool:
        return self.since is not None

    def hold_for(self, shown_members: int, fresh_members: int, now: float) -> float | None:
        """Seconds the view shown should still be held instead of the fresh one, or None to
        show the fresh one (not empty, nothing shown before, or the grace is over)."""
        if fresh_members == 0 and shown_members > 0:
            if self.since is None:
                self.since = now
                self.holds += 1
            left = self.grace - (now - self.since)
            if left > 0:
                return left
        self.since = None
        return None
