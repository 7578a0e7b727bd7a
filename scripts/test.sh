#!/usr/bin/env bash
# Every test of the project: formatting, unit tests, simulation and property tests of the
# scheduler, and the end-to-end tests that start real lotus-miner / lotus-worker processes on
# loopback. Needs only a Rust toolchain (cargo) and a C compiler.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null || { echo "cargo not found: install Rust (https://rustup.rs) first" >&2; exit 1; }
# One clean build, no incremental caches: they only help repeated edits, and cost gigabytes.
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
# Each phase says how long it took (a clean clone's run is mostly building).
t0=$(date +%s)
phase() { echo "test.sh: $1 took $(($(date +%s) - t0)) s" >&2; t0=$(date +%s); }
cargo fmt --all -- --check
phase "fmt"
# The dashboard's browser tests need Debian's Chromium and its WebDriver; a fresh machine gets
# them while the build runs (a download, little CPU).
browser_log=$(mktemp)
(
    if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            export DEBIAN_FRONTEND=noninteractive
            apt-get install -y -q chromium chromium-driver \
                || { apt-get update -q && apt-get install -y -q chromium chromium-driver; }
        else
            echo "chromium and chromedriver are missing: install Debian's chromium and chromium-driver (as root)"
        fi
    fi
) > "$browser_log" 2>&1 &
browser_install=$!
# Lint while building: clippy's driver compiles this workspace's crates (lints, then code) and
# plain rustc the dependencies, so the proofs stack is compiled once instead of twice (a
# `cargo clippy` check build, then the test build: about 7 minutes on 2 cores). Same lints
# and `-D warnings` as `cargo clippy --workspace --all-targets -- -D warnings`. The test
# runner below runs with the same environment, so it builds nothing again.
export RUSTC_WORKSPACE_WRAPPER="$(rustc --print sysroot)/bin/clippy-driver"
export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
# Every test binary (the end-to-end tests' lotus-miner and lotus-worker with them) and the
# benchmarks, so that the time the test runner prints is the test phase alone.
cargo test --workspace --all-targets --locked --no-run -q
phase "clippy and building the tests"
# Devnet proof parameters for 2KiB sectors, generated once per machine (about 12 minutes and
# 5 GiB of RAM the first time) into one cache shared by every test run.
export FIL_PROOFS_PARAMETER_CACHE=${FIL_PROOFS_PARAMETER_CACHE:-/var/tmp/filecoin-proof-parameters}
"${CARGO_TARGET_DIR:-target}/debug/lotus-miner" fetch-params 2KiB
phase "2KiB parameters"
wait "$browser_install" || { cat "$browser_log" >&2; echo "test.sh: installing Chromium failed" >&2; }
rm -f "$browser_log"
phase "Chromium for the browser tests (after the build)"
if cargo nextest --version >/dev/null 2>&1; then
    # Every test in its own process, end-to-end tests of different binaries side by side
    # (.config/nextest.toml: real-proof tests one at a time). Its last line is the summary,
    # with the test phase's time.
    exec cargo nextest run --workspace --locked
fi
# Without cargo-nextest: one test binary after another.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
start=$(date +%s)
cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$log" || status=$?
echo "test phase: $(($(date +%s) - start)) s"
# One total at the end: cargo's last line is a doc-test run of the last crate, often empty.
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit $status
