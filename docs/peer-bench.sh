#!/usr/bin/env bash
# peer-bench.sh - measure llama.cpp on THIS machine, in the same window as ttq,
# so ttq's speed can be quoted as a ratio against llama.cpp rather than against
# figures taken on another machine.
#
# From nothing but npm access it fetches a prebuilt CPU llama.cpp (the pinned
# @node-llama-cpp/linux-x64 package: libllama + ggml with per-CPU backend
# variants) and the matching llama.cpp headers (inside the pinned node-llama-cpp
# package's git bundle), builds peer-bench.c (next to this script) with gcc,
# quantizes the given F16 GGUF to Q8_0 and Q4_0 with llama.cpp's own quantizer,
# and runs llama-bench-style tests: pp PP (one batch of random tokens) and tg TG
# (single-token decode), THREADS threads, REPS timed repeats after one warmup.
# Prints one JSON line per (weights, test) on stdout; progress goes to stderr.
#
#   docs/peer-bench.sh [MODEL_F16.gguf]        (default /tmp/ttq-synth-738m.gguf; docs/bench.sh runs it with PEER=1)
#
# Environment: PEER_WORK (work dir, default /tmp/peer), PEER_THREADS (2),
# PEER_REPS (5), PEER_PP (128), PEER_TG (32), PEER_LOCK (/tmp/ttq-cpu.lock: every
# CPU-heavy step runs under `flock $PEER_LOCK`, one short step at a time),
# PEER_WEIGHTS ("F16 Q8_0 Q4_0"), PEER_CPU_VARIANT (e.g. icelake: force that
# libggml-cpu-*.so instead of ggml's best pick for this CPU), PEER_SRC (path
# of peer-bench.c). Needs: npm, git, gcc, flock, sha1sum.
set -euo pipefail

NLC_VERSION=3.22.1                 # node-llama-cpp release (llama.cpp tag v0.5.0, commit 0ad4a86)
BIN_PKG=@node-llama-cpp/linux-x64
BIN_SHA1=cf9934edd4cf034260358123d65f9f8c9fb6b5fd    # npm dist.shasum of $BIN_PKG@$NLC_VERSION
SRC_PKG=node-llama-cpp
SRC_SHA1=e908932762f21939024263d58f1d6dc3e88b23e6    # npm dist.shasum of $SRC_PKG@$NLC_VERSION

MODEL=${1:-/tmp/ttq-synth-738m.gguf}
WORK=${PEER_WORK:-/tmp/peer}
THREADS=${PEER_THREADS:-2}
REPS=${PEER_REPS:-5}
PP=${PEER_PP:-128}
TG=${PEER_TG:-32}
LOCK=${PEER_LOCK:-/tmp/ttq-cpu.lock}
WEIGHTS=${PEER_WEIGHTS:-"F16 Q8_0 Q4_0"}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC=${PEER_SRC:-$HERE/peer-bench.c}

log() { echo "peer-bench: $*" >&2; }
for tool in npm git gcc flock sha1sum; do
    command -v "$tool" >/dev/null || { log "missing $tool"; exit 1; }
done
[ -f "$MODEL" ] || { log "no model at $MODEL"; exit 1; }
[ -f "$SRC" ] || { log "no harness source at $SRC"; exit 1; }
mkdir -p "$WORK"
cd "$WORK"

# 1. Fetch the two pinned packages (npm pack checks the registry's integrity;
#    the sha1 pins catch a republished tarball).
fetch() { # name version sha1 -> unpacks into ./$4
    local tgz
    if [ ! -d "$4" ]; then
        tgz=$(npm pack --silent "$1@$2" | tail -1)
        echo "$3  $tgz" | sha1sum -c --quiet - || { log "checksum mismatch for $1@$2"; exit 1; }
        mkdir -p "$4.tmp" && tar -xzf "$tgz" -C "$4.tmp" && mv "$4.tmp" "$4"
    fi
}
fetch "$BIN_PKG" "$NLC_VERSION" "$BIN_SHA1" pkg-bin
fetch "$SRC_PKG" "$NLC_VERSION" "$SRC_SHA1" pkg-src
LIBDIR=$WORK/pkg-bin/package/bins/linux-x64
LLAMA_TAG=$(sed -n 's/.*"tag": *"\([^"]*\)".*/\1/p' pkg-src/package/llama/llama.cpp.info.json)

# 2. llama.cpp's public headers, from the source bundle shipped in node-llama-cpp.
if [ ! -f hdr/include/llama.h ]; then
    rm -rf hdr hdr.git
    git clone -q --bare pkg-src/package/llama/gitRelease.bundle hdr.git
    mkdir -p hdr
    git --git-dir=hdr.git archive HEAD include ggml/include | tar -x -C hdr
fi

# 3. Build the harness against the prebuilt shared libraries.
LIBLLAMA=$(cd "$LIBDIR" && ls libllama.v*.so | head -1)
LIBGGML=$(cd "$LIBDIR" && ls libggml.v*.so | head -1)
gcc -O2 -std=c11 -Wall -o peer-bench "$SRC" -Ihdr/include -Ihdr/ggml/include \
    -L"$LIBDIR" -l:"$LIBLLAMA" -l:"$LIBGGML" -l:libggml-base.so -Wl,-rpath,"$LIBDIR" -lm

export PEER_BACKEND_DIR=$LIBDIR
if [ -n "${PEER_CPU_VARIANT:-}" ]; then
    export PEER_CPU_BACKEND=$LIBDIR/libggml-cpu-$PEER_CPU_VARIANT.so
fi
log "llama.cpp $LLAMA_TAG via $BIN_PKG@$NLC_VERSION; $(./peer-bench info)"

# 4. Quantize with llama.cpp's own quantizer (llama_ftype 7 = Q8_0, 2 = Q4_0).
base=$(basename "$MODEL" .gguf)
model_for() {
    case $1 in
        F16) echo "$MODEL" ;;
        Q8_0) echo "$WORK/$base-q8_0.gguf" ;;
        Q4_0) echo "$WORK/$base-q4_0.gguf" ;;
        *) log "unknown weights $1"; exit 1 ;;
    esac
}
for w in $WEIGHTS; do
    out=$(model_for "$w")
    [ "$w" = F16 ] || [ -s "$out" ] && continue
    ftype=7; [ "$w" = Q4_0 ] && ftype=2
    flock "$LOCK" ./peer-bench quantize "$MODEL" "$out.tmp" "$ftype" "$THREADS"
    mv "$out.tmp" "$out"
done

# 5. Benchmark, one short locked run per weights file.
extra="\"llama_cpp\":\"$LLAMA_TAG\",\"package\":\"$BIN_PKG@$NLC_VERSION\""
for w in $WEIGHTS; do
    flock "$LOCK" ./peer-bench bench "$(model_for "$w")" -t "$THREADS" -p "$PP" -n "$TG" \
        -r "$REPS" --label "$w" --extra "$extra"
done
