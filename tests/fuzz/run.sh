#!/usr/bin/env bash
# run.sh -- the bounded fuzz run of the test suite (ctest: fuzz_short), and the way to fuzz
# longer by hand (docs/FUZZING.md).
#
# 1. Configures (once) and builds a clang tree with -DTTQ_FUZZ=ON in $TTQ_FUZZ_BUILD_DIR
#    (ctest sets it under its build directory; default: build-fuzz in the source tree) and
#    builds only the fuzz_<target> executables.
# 2. For every target (all of tests/fuzz/corpus/*, or those named as arguments), one after the
#    other: copies the seeds and the regression inputs into a fresh working corpus under
#    $TTQ_FUZZ_WORK_DIR (never into the source tree) and runs libFuzzer on it for
#    $TTQ_FUZZ_SECONDS seconds (default 20) with -timeout=10 -rss_limit_mb=2048 and a per-target
#    -max_len, crash files going to $TTQ_FUZZ_WORK_DIR/<target>/artifacts/.
# 3. Fails (exit 1) when any target crashed, leaked, hit UB, timed out or ran out of memory,
#    naming each crash file and the command that replays it; prints every target's final
#    libFuzzer status line (execs, coverage, features) either way.
#
# Exit 77 (ctest: skipped) with the reason when clang or its libFuzzer runtime is missing
# (`make deps` installs them: deploy/deps.d/fuzz.list).
#
# Environment: TTQ_FUZZ_SECONDS (per target), TTQ_FUZZ_JOBS (build parallelism, default 2),
# TTQ_FUZZ_KEEP_CORPUS=1 (keep and extend the working corpus between runs instead of starting
# from the seeds), TTQ_FUZZ_EXTRA (more libFuzzer flags, e.g. "-jobs=2 -workers=2").
set -uo pipefail
{ # the whole script is one compound command: bash parses it before running it, so editing
  # this file while a long run is going on cannot derail the run

here=$(cd "$(dirname "$0")" && pwd)
src=${TTQ_SOURCE_DIR:-$(cd "$here/../.." && pwd)}
build=${TTQ_FUZZ_BUILD_DIR:-$src/build-fuzz}
work=${TTQ_FUZZ_WORK_DIR:-$build/work}
seconds=${TTQ_FUZZ_SECONDS:-20}
jobs=${TTQ_FUZZ_JOBS:-2}

skip() { echo "SKIPPED: $*" >&2; exit 77; }

cc=""
for c in clang clang-14 clang-15 clang-16; do
  if command -v "$c" >/dev/null 2>&1; then cc=$(command -v "$c"); break; fi
done
[ -n "$cc" ] || skip "clang is not installed (make deps installs it: deploy/deps.d/fuzz.list)"
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
printf '#include <stddef.h>\n#include <stdint.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n' \
  >"$probe/p.c"
if ! "$cc" -fsanitize=fuzzer,address,undefined "$probe/p.c" -o "$probe/p" 2>"$probe/err"; then
  cat "$probe/err" >&2
  skip "$cc cannot link -fsanitize=fuzzer (libFuzzer runtime missing: Debian package libclang-rt-14-dev)"
fi

echo "fuzz: clang $cc, build $build, work $work, ${seconds}s per target"
t0=$(date +%s)
mkdir -p "$build"
cfg=(-DTTQ_FUZZ=ON)
# A new tree gets clang; an existing one keeps its compiler (CMake cannot change it).
[ -f "$build/CMakeCache.txt" ] || cfg+=(-DCMAKE_C_COMPILER="$cc" -DCMAKE_BUILD_TYPE=RelWithDebInfo)
if ! cmake -S "$src" -B "$build" "${cfg[@]}" >"$build/fuzz-configure.log" 2>&1; then
  cat "$build/fuzz-configure.log" >&2
  echo "fuzz: FAILED to configure the fuzz tree $build" >&2
  exit 1
fi
if ! cmake --build "$build" --target fuzz_all -j"$jobs" >"$build/fuzz-build.log" 2>&1; then
  cat "$build/fuzz-build.log" >&2
  echo "fuzz: FAILED to build the harnesses" >&2
  exit 1
fi
echo "fuzz: harnesses built in $(( $(date +%s) - t0 ))s"

# Per-target input size limits: files need room for headers and a few tensors; text and
# requests stay small so that each exec is cheap.
max_len() {
  case "$1" in
    safetensors|gguf) echo 16384 ;;
    tokenizer_json) echo 32768 ;;
    tokenizer) echo 4096 ;;
    proto_request|request) echo 4096 ;;
    *) echo 4096 ;;
  esac
}

if [ $# -gt 0 ]; then
  targets=("$@")
else
  targets=()
  for d in "$here"/corpus/*/; do targets+=("$(basename "$d")"); done
fi

failed=()
summary=()
if ! command -v llvm-symbolizer >/dev/null 2>&1; then
  for s in /usr/lib/llvm-*/bin/llvm-symbolizer; do
    [ -x "$s" ] && export ASAN_SYMBOLIZER_PATH="$s" && break
  done
fi
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
for t in "${targets[@]}"; do
  bin="$build/tests/fuzz/fuzz_$t"
  [ -x "$bin" ] || { echo "fuzz: no harness $bin" >&2; failed+=("$t"); continue; }
  tw="$work/$t"
  if [ "${TTQ_FUZZ_KEEP_CORPUS:-0}" != 1 ]; then rm -rf "$tw/corpus"; fi
  rm -rf "$tw/artifacts"
  mkdir -p "$tw/corpus" "$tw/artifacts"
  cp "$here/corpus/$t"/* "$tw/corpus/" 2>/dev/null || true
  for f in "$here/regressions/$t"/*; do
    [ -f "$f" ] && cp "$f" "$tw/corpus/"
  done
  dict=()
  [ -f "$here/dict/$t.dict" ] && dict=(-dict="$here/dict/$t.dict")
  echo "== fuzz_$t: ${seconds}s, max_len $(max_len "$t")"
  # shellcheck disable=SC2086
  "$bin" "${dict[@]}" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -max_len="$(max_len "$t")" -print_final_stats=1 -artifact_prefix="$tw/artifacts/" \
    ${TTQ_FUZZ_EXTRA:-} "$tw/corpus" >"$tw/log" 2>&1
  rc=$?
  last=$(grep -E '^#[0-9]+' "$tw/log" | tail -n 1)
  summary+=("fuzz_$t: exit $rc; $last")
  crashes=$(find "$tw/artifacts" -type f 2>/dev/null)
  if [ $rc -ne 0 ] || [ -n "$crashes" ]; then
    failed+=("$t")
    tail -n 60 "$tw/log" >&2
    for c in $crashes; do
      echo "fuzz: CRASH in $t: $c" >&2
      echo "fuzz:   replay: $bin $c" >&2
      echo "fuzz:   keep it: cp $c $here/regressions/$t/ (then fix the bug)" >&2
    done
  fi
done

echo "== summary (total $(( $(date +%s) - t0 ))s)"
for s in "${summary[@]}"; do echo "$s"; done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: FAILED: ${failed[*]} (logs: $work/<target>/log)" >&2
  exit 1
fi
echo "fuzz: all ${#targets[@]} targets ran ${seconds}s without a crash"
exit 0
}
