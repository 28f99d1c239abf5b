"""rollway.js as shipped: the builds agree, the CLI prints them, the types hold, it is small.

What it does in a page is tested in a real browser (test_browser.py); here, what can be
checked about the files themselves. ``tsc`` is Debian's node-typescript.
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rollway import web

# Seconds each (servers, subprocesses, whole simulated deploys): not in `pytest -m unit`.
pytestmark = [pytest.mark.slow]

TSC = shutil.which("tsc")
SIZE_LIMIT = 2048        # bytes, minified and gzipped (the target)


def rollway_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rollway.cli.main", *args], capture_output=True, text=True, check=False)


def test_the_classic_build_is_the_module_rebuilt():
    # One source: rollway.js. `python -m rollway.web` rewrites the classic build after an edit.
    assert web.source("classic") == web.classic_build(web.source("module"))
    with pytest.raises(ValueError, match="exactly one export"):
        web.classic_build(web.source("module") + "\nexport const extra = 1;\n")


def test_client_js_prints_each_build_and_its_installed_path():
    for flags, kind in (((), "module"), (("--classic",), "classic"), (("--types",), "types")):
        printed = rollway_cli("client-js", *flags)
        assert printed.returncode == 0 and printed.stdout == web.source(kind), printed.stderr
        where = rollway_cli("client-js", *flags, "--path")
        path = Path(where.stdout.strip())
        assert where.returncode == 0 and path.is_file() and path.read_text() == web.source(kind)
        assert "site-packages" in str(path) or path.parent == web.HERE     # inside the package
    wrong = rollway_cli("client-js", "--classic", "--types")
    assert wrong.returncode == 2 and "not allowed with" in wrong.stderr


def _tsc(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    assert TSC, "tsc not found (Debian: apt-get install node-typescript)"
    for kind in web.FILES:
        shutil.copy(web.path(kind), tmp_path)
    return subprocess.run([TSC, "--noEmit", "--lib", "es2020,dom", "--target", "es2020", *args],
                          cwd=tmp_path, capture_output=True, text=True, check=False)


def test_the_declarations_type_a_users_code_and_hold_the_javascript_to_them(tmp_path):
    (tmp_path / "usage.ts").write_text("""
import { install, RefreshEvent } from "./rollway.js";
const handle = install({
  appVersionHeader: "x-deployment-id",
  onRefresh: (event: RefreshEvent) => { if (event.from !== event.version) event.reload(); },
  apiOrigins: ["https://api.example.com"],
});
const pending: string = handle.pending;
window.Rollway.install({ onRefresh: "immediate" });
""")
    typed = _tsc(tmp_path, "--strict", "--module", "es2020", "usage.ts")
    assert typed.returncode == 0, typed.stdout
    (tmp_path / "wrong.ts").write_text('import { install } from "./rollway.js";\ninstall({ onRefresh: "sometimes" });\n')
    wrong = _tsc(tmp_path, "--strict", "--module", "es2020", "wrong.ts")
    assert wrong.returncode != 0 and "sometimes" in wrong.stdout
    # The JavaScript itself, checked against its declarations (JSDoc points at rollway.d.ts).
    for name, module in (("rollway.js", ("--module", "es2020")), ("rollway.classic.js", ())):
        checked = _tsc(tmp_path, "--allowJs", "--checkJs", *module, name)
        assert checked.returncode == 0, (name, checked.stdout)


def test_rollway_js_is_small():
    import rjsmin

    size = len(gzip.compress(rjsmin.jsmin(web.source("module")).encode(), 9))
    assert size <= SIZE_LIMIT, f"rollway.js is {size} bytes minified and gzipped (limit {SIZE_LIMIT})"
