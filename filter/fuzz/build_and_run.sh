#!/usr/bin/env bash
# Builds the fuzz targets with clang (libFuzzer + AddressSanitizer + UndefinedBehavior-
# Sanitizer) and runs each for a bounded time from the checked-in seed corpus.
# Usage: filter/fuzz/build_and_run.sh OUT_DIR SECONDS_PER_TARGET
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${1:?output directory}"
seconds="${2:-30}"
mkdir -p "$out"
# nlohmann/json: the headers the package build uses (the nlohmann-json Python package, in
# the Python running this: $PYTHON, else python3), else the system's.
python="${PYTHON:-python3}"
json_include="$("$python" -c 'import os, nlohmann_json; print(os.fspath(nlohmann_json.get_include()))' 2>/dev/null || true)"
flags=(-std=c++17 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
       -fno-omit-frame-pointer -I"$root/native/include" -I"$root/filter")
if [ -n "$json_include" ]; then flags+=(-isystem "$json_include"); fi
core=("$root"/native/src/*.cc)
clang++ "${flags[@]}" "$here/cookie_fuzz.cc" "$root/filter/cookies.cc" "${core[@]}" -o "$out/cookie_fuzz"
clang++ "${flags[@]}" "$here/config_fuzz.cc" "${core[@]}" -o "$out/config_fuzz"
# The filter's hooks through the fake Envoy host (tests/fake_envoy), the module compiled in.
clang -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -c "$root/tests/fake_envoy/fake_envoy_host.c" \
  -o "$out/fake_envoy_host.o"
clang++ "${flags[@]}" "$here/filter_fuzz.cc" "$root/filter/rollway_filter.cc" "$root/filter/cookies.cc" "${core[@]}" \
  "$out/fake_envoy_host.o" -o "$out/filter_fuzz"
for target in cookie config filter; do
  work="$out/corpus-$target"
  mkdir -p "$work"
  cp -n "$here/corpus/$target"/* "$work/" 2>/dev/null || true
  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1 \
    "$out/${target}_fuzz" -max_total_time="$seconds" -seed=1 -max_len=4096 -timeout=10 \
    -print_final_stats=1 -artifact_prefix="$out/${target}-" "$work"
done
