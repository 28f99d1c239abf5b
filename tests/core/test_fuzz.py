"""Bounded fuzzing in CI: the cookie/request target, the config target and the filter's
own hooks through the fake Envoy host, built with libFuzzer, AddressSanitizer and
UndefinedBehaviorSanitizer, must run with no finding."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.fuzz]

ROOT = Path(__file__).parents[2]
SECONDS = int(os.environ.get("ROLLWAY_FUZZ_SECONDS", "30"))


def test_fuzz_targets_run_clean(tmp_path):
    out = subprocess.run([str(ROOT / "filter" / "fuzz" / "build_and_run.sh"), str(tmp_path), str(SECONDS)],
                         capture_output=True, text=True, timeout=SECONDS * 2 + 600,
                         env={**os.environ, "PYTHON": sys.executable})
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-4000:]
    runs = [int(n) for n in re.findall(r"Done (\d+) runs", log)]
    assert len(runs) == 3 and all(n > 1000 for n in runs), log[-2000:]
    assert not [p for p in tmp_path.iterdir() if re.search(r"(crash|leak|timeout|oom)-", p.name)]
