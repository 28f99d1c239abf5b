"""The browser-session model every harness shares (rollway.tools.session): what counts as a
move, a bounce and a refresh, and what a session sends."""

from __future__ import annotations

from rollway.tools.session import MAX_ERROR_KINDS, BrowserSession


def test_a_session_keeps_cookies_loads_once_and_reloads_when_told():
    s = BrowserSession()
    assert s.headers() == {}
    s.answered(200, [("set-cookie", "rw_rid=abc; Path=/; Max-Age=86400")], "v1")
    assert s.headers() == {"cookie": "rw_rid=abc", "x-app-version": "v1"}
    s.answered(200, [("set-cookie", "rw_ver=v2; Path=/")], "v2")          # served v2, not told
    assert s.app_version == "v1" and s.moves == 1 and s.refreshes == 0
    assert s.answered(200, [("x-rw-refresh", "v2")], "v2") == "v2"
    assert s.app_version == "v2" and s.refreshes == 1 and s.cookies == {"rw_rid": "abc", "rw_ver": "v2"}


def test_a_bounce_is_a_return_to_a_version_the_session_had_left():
    s = BrowserSession()
    for version in ["v1", "v1", "v2", "v2", "v1"]:
        s.answered(200, [], version)
    assert (s.moves, s.bounces, s.left) == (2, 1, {"v1", "v2"})


def test_errors_count_and_change_nothing_but_cookies():
    s = BrowserSession()
    s.answered(503, [("set-cookie", "rw_rid=x")], None)
    s.failed()
    assert (s.errors, s.requests, s.served, s.app_version, s.cookies) == (2, 1, [], None, {"rw_rid": "x"})


def test_a_long_lived_session_remembers_a_bounded_history():
    s = BrowserSession(keep=3)
    for i in range(10):
        s.answered(200, [], f"v{i % 2}")
    assert len(s.served) == 3 and s.bounces == 8


def test_failures_say_why_and_their_reasons_are_bounded():
    s = BrowserSession()
    s.answered(503, [], None, b"no healthy upstream")
    s.failed("TimeoutError: timed out")
    assert s.error_kinds == {"status 503: no healthy upstream": 1, "TimeoutError: timed out": 1}
    for i in range(100):                         # a body that differs every time
        s.answered(500, [], None, f"request {i} failed".encode())
    assert len(s.error_kinds) == MAX_ERROR_KINDS + 1 and s.error_kinds["other"] == 100 - (MAX_ERROR_KINDS - 2)
    assert s.errors == 102
