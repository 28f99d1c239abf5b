"""`pip install .` needs only a C++ compiler and Python: the nlohmann/json headers come from
PyPI (the nlohmann-json build requirement). Shown with Debian's nlohmann-json3-dev hidden
in a private mount namespace (root: `unshare --mount`), from a copy of the tracked sources,
into a fresh virtualenv; then `auditwheel show` reports the wheel's glibc floor, which no
longer comes from arc4random (randomness is getrandom(2))."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.packaging]

ROOT = Path(__file__).parent.parent
DEBIAN_JSON = ["/usr/include/nlohmann", "/usr/share/cmake/nlohmann_json"]


def tracked_sources(into: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, files):
        source = ROOT / name.decode()
        if source.is_file():
            target = into / name.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def test_pip_install_with_only_a_compiler_and_python(tmp_path):
    assert shutil.which("unshare"), "unshare (util-linux) is needed to hide the Debian package"
    src, venv, dist = tmp_path / "src", tmp_path / "venv", tmp_path / "dist"
    tracked_sources(src)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = f"{venv}/bin/python -m pip"
    hide = " ".join(f"if [ -e {d} ]; then mount -t tmpfs tmpfs {d}; fi;" for d in DEBIAN_JSON)
    script = (f"set -e; {hide} test ! -e /usr/include/nlohmann/json.hpp; "
              f"test ! -e /usr/share/cmake/nlohmann_json/nlohmann_jsonConfig.cmake; "
              f"{pip} install -q --upgrade pip; "
              f"{pip} wheel -q --no-deps -w {dist} {src}; "
              f"{pip} install -q {dist}/rollway-*.whl auditwheel; "
              f"cd {tmp_path} && {venv}/bin/python -c 'import rollway, rollway._core; "
              f"print(rollway.Router, rollway.filter_library_path())'; "
              f"{venv}/bin/rollway --version")
    built = subprocess.run(["unshare", "--mount", "--propagation", "private", "bash", "-c", script],
                           capture_output=True, text=True, timeout=1500)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-5000:]
    assert "librollway_filter.so" in built.stdout and "rollway 0.1.0" in built.stdout
    # Outside the namespace the Debian headers are still there: the build used PyPI's.
    shown = subprocess.run([f"{venv}/bin/auditwheel", "show", *map(str, dist.glob("rollway-*.whl"))],
                           capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    text = " ".join(shown.stdout.split())
    floor = re.search(r'"manylinux_(\d+)_(\d+)_x86_64"', text)
    assert floor, text
    print(f"auditwheel show: {text}")
    assert (int(floor.group(1)), int(floor.group(2))) < (2, 36), text   # arc4random (2.36) is gone
    module = next(Path(venv).glob("lib/python3*/site-packages/rollway/_filter/librollway_filter.so"))
    symbols = subprocess.run(["objdump", "-T", str(module)], capture_output=True, text=True, check=True).stdout
    assert "arc4random" not in symbols and "getrandom" in symbols
