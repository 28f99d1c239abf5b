"""Real browser tabs: Debian's headless Chromium, driven by Selenium through Debian's
``chromium-driver``.

Nothing is downloaded: the driver is ``/usr/bin/chromedriver``, given explicitly, and
``SE_OFFLINE=true`` keeps Selenium Manager off the network. Selenium is the ``browser``
extra (``pip install 'rollway[browser]'``); a missing piece fails with the package to
install.

    with Tabs(["http://127.0.0.1:10000/"] * 10, per_browser=5) as tabs:
        ...
        states = tabs.states()      # each tab's sessionStorage["rollway-demo"] (rollway.tools.webapp)
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # selenium is an optional extra, imported only when a browser starts
    from selenium.webdriver.remote.webdriver import WebDriver

CHROMEDRIVER = "/usr/bin/chromedriver"
# Tabs in the background must keep their timers: a deploy is watched from every tab at once.
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
         "--disable-backgrounding-occluded-windows", "--no-first-run", "--disable-extensions",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--metrics-recording-only", "--window-size=1000,700")


def chromium_binary() -> str:
    """Debian's headless-capable browser (``apt-get install chromium``)."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise FileNotFoundError("no chromium on PATH (Debian: apt-get install chromium)")


def start_chromium(*, accept_insecure_certs: bool = False):
    """One headless Chromium (its own profile: its own cookies) under Selenium."""
    os.environ["SE_OFFLINE"] = "true"          # Selenium Manager must never reach the network
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as error:
        raise RuntimeError("browser tabs need selenium: pip install 'rollway[browser]'") from error
    if not os.path.exists(CHROMEDRIVER):
        raise FileNotFoundError(f"no {CHROMEDRIVER} (Debian: apt-get install chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium_binary()
    for flag in FLAGS:
        options.add_argument(flag)
    options.accept_insecure_certs = accept_insecure_certs
    try:
        return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    except Exception as error:   # selenium's own exceptions: say what did not start
        raise RuntimeError(f"headless Chromium did not start under {CHROMEDRIVER}: {error}") from error


@dataclass
class Tab:
    driver: WebDriver
    handle: str
    lock: threading.Lock
    url: str


class Tabs:
    """``len(urls)`` tabs, ``per_browser`` to a Chromium (the tabs of one browser share its
    cookies, like a user's tabs; different browsers are different users)."""

    def __init__(self, urls: list[str], per_browser: int = 5, *, accept_insecure_certs: bool = False):
        self.drivers: list = []
        self.tabs: list[Tab] = []
        try:
            for start in range(0, len(urls), per_browser):
                driver = start_chromium(accept_insecure_certs=accept_insecure_certs)
                self.drivers.append(driver)
                lock = threading.Lock()
                for i, url in enumerate(urls[start:start + per_browser]):
                    if i:
                        driver.switch_to.new_window("tab")
                    driver.get(url)
                    self.tabs.append(Tab(driver, driver.current_window_handle, lock, url))
        except BaseException:
            self.close()
            raise

    def run(self, tab: Tab, script: str, *args):
        """Runs ``script`` in ``tab`` (Selenium's execute_script) and returns its value."""
        with tab.lock:
            tab.driver.switch_to.window(tab.handle)
            return tab.driver.execute_script(script, *args)

    def run_async(self, tab: Tab, script: str, *args):
        with tab.lock:
            tab.driver.switch_to.window(tab.handle)
            return tab.driver.execute_async_script(script, *args)

    def state(self, tab: Tab) -> dict:
        """What the demo page recorded in this tab (``rollway.tools.webapp``)."""
        raw = self.run(tab, "return sessionStorage.getItem('rollway-demo')")
        return json.loads(raw) if raw else {}

    def states(self) -> list[dict]:
        return [self.state(tab) for tab in self.tabs]

    def close(self) -> None:
        for driver in self.drivers:
            with contextlib.suppress(Exception):   # a browser that died already: nothing left to stop
                driver.quit()
        self.drivers.clear()

    def __enter__(self) -> Tabs:
        return self

    def __exit__(self, *_) -> None:
        self.close()


def _headless(url: str, *flags: str, budget_ms: int = 4000, timeout: float = 90.0) -> subprocess.CompletedProcess:
    # --virtual-time-budget lets the page's fetch-and-render loop run before the capture.
    return subprocess.run([chromium_binary(), "--headless=new", "--no-sandbox", "--disable-gpu",
                           "--hide-scrollbars", f"--virtual-time-budget={budget_ms}", *flags, url],
                          capture_output=True, text=True, timeout=timeout)


def rendered_dom(url: str) -> str:
    """The page's DOM after its scripts ran, from a real headless Chromium."""
    out = _headless(url, "--dump-dom")
    if out.returncode != 0 or "<html" not in out.stdout:
        raise RuntimeError(f"chromium --dump-dom failed ({out.returncode}): {out.stderr[-2000:]}")
    return out.stdout


def screenshot(url: str, path: str, width: int = 1280, height: int = 720) -> None:
    """A PNG of the page as a real headless Chromium renders it."""
    out = _headless(url, f"--window-size={width},{height}", f"--screenshot={path}")
    if out.returncode != 0:
        raise RuntimeError(f"chromium --screenshot failed ({out.returncode}): {out.stderr[-2000:]}")


__all__ = ["CHROMEDRIVER", "Tab", "Tabs", "chromium_binary", "rendered_dom", "screenshot", "start_chromium"]
