#!/usr/bin/env bash
# The main job on a fresh machine: build, generate the devnet 2KiB proof parameters if they are
# missing (about 12 minutes, once per machine), start a miner and two seal workers on loopback
# (an AddPiece/PreCommit1/Unseal worker and a PreCommit2/Commit worker), pledge a sector and
# seal it for real (real proofs, verified by the devnet node the miner reaches the chain
# through, `lotus-devnet daemon`, as it would a Lotus node) until Proving, then show
# what an operator sees. Everything lives in a temporary directory and is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo >/dev/null || { echo "cargo not found: install Rust (https://rustup.rs) first" >&2; exit 1; }
echo "==> building lotus-miner, lotus-worker and lotus-devnet"
cargo build --bins -q
BIN=$PWD/target/debug
export FIL_PROOFS_PARAMETER_CACHE=${FIL_PROOFS_PARAMETER_CACHE:-/var/tmp/filecoin-proof-parameters}
echo "==> lotus-miner fetch-params 2KiB (into $FIL_PROOFS_PARAMETER_CACHE)"
"$BIN/lotus-miner" fetch-params 2KiB

WORK=$(mktemp -d /tmp/lotus-demo.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    echo "==> logs and repos kept in $WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
MINER_PORT=$(free_port)

export LOTUS_MINER_PATH=$WORK/miner
export LOTUS_API_LISTENADDRESS=/ip4/127.0.0.1/tcp/$MINER_PORT/http
# The miner's own worker does no sealing: everything goes to the two workers; it keeps the
# finalized sectors in its store.
export LOTUS_STORAGE_ALLOWADDPIECE=false LOTUS_STORAGE_ALLOWPRECOMMIT1=false LOTUS_STORAGE_ALLOWPRECOMMIT2=false \
       LOTUS_STORAGE_ALLOWCOMMIT=false LOTUS_STORAGE_ALLOWUNSEAL=false LOTUS_STORAGE_LOCALWORKERNAME=miner
export LOTUS_DEVNET_PATH=$WORK/devnet
# The chain: a devnet node serving Lotus's FullNode API. Short WindowPoSt deadlines (10 epochs
# of 1 s), so the sealed sector is proven within a minute.
echo "==> lotus-devnet daemon --wpost-challenge-window 10"
"$BIN/lotus-devnet" daemon --listen 127.0.0.1:0 --wpost-challenge-window 10 >"$WORK/devnet.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do [ -f "$LOTUS_DEVNET_PATH/api" ] && break; sleep 0.2; done
echo "==> lotus-devnet auth api-info --perm admin"
FULLNODE=$("$BIN/lotus-devnet" auth api-info --perm admin)
echo "$FULLNODE"
export "${FULLNODE?}"

echo "==> lotus-miner init --sector-size 2KiB (creates the miner actor on chain)"
"$BIN/lotus-miner" init --sector-size 2KiB
"$BIN/lotus-miner" run >"$WORK/miner.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do "$BIN/lotus-miner" info >/dev/null 2>&1 && break; sleep 0.2; done

echo "==> lotus-miner auth api-info --perm admin"
INFO=$("$BIN/lotus-miner" auth api-info --perm admin)
echo "$INFO"
export "${INFO?}"

echo "==> lotus-worker run --addpiece --precommit1 --unseal (the guide's PreCommit1 worker)"
LOTUS_WORKER_PATH=$WORK/worker-pc1 "$BIN/lotus-worker" run --listen 127.0.0.1:$(free_port) --name pc1-worker \
    --addpiece=true --precommit1=true --unseal=true --precommit2=false --commit=false >"$WORK/worker-pc1.log" 2>&1 &
PIDS+=($!)
echo "==> lotus-worker run (PreCommit2 + Commit worker)"
LOTUS_WORKER_PATH=$WORK/worker-pc2 "$BIN/lotus-worker" run --listen 127.0.0.1:$(free_port) --name pc2-worker \
    --addpiece=false --precommit1=false --unseal=false --precommit2=true --commit=true >"$WORK/worker-pc2.log" 2>&1 &
PIDS+=($!)

for _ in $(seq 100); do
    [ "$("$BIN/lotus-miner" sealing workers 2>/dev/null | grep -c '^Worker ')" -ge 3 ] && break
    sleep 0.2
done
echo "==> lotus-miner sealing workers"
"$BIN/lotus-miner" sealing workers
echo "==> lotus-miner info"
"$BIN/lotus-miner" info
echo "==> lotus-worker info (the PreCommit1 worker)"
LOTUS_WORKER_PATH=$WORK/worker-pc1 "$BIN/lotus-worker" info
echo "==> lotus-miner storage list"
"$BIN/lotus-miner" storage list

echo "==> lotus-miner sectors pledge"
"$BIN/lotus-miner" sectors pledge
START=$(date +%s)
LAST=""
while :; do
    STATE=$("$BIN/lotus-miner" sectors status 1 | awk -F'\t+' '/^Status:/ {print $2}')
    if [ "$STATE" != "$LAST" ]; then
        echo "    $(( $(date +%s) - START ))s  sector 1: $STATE"
        LAST=$STATE
        if [ "$STATE" = "PreCommit2" ] || [ "$STATE" = "Committing" ]; then
            echo "==> lotus-miner sealing jobs"
            "$BIN/lotus-miner" sealing jobs
        fi
    fi
    [ "$STATE" = "Proving" ] && break
    if [ $(( $(date +%s) - START )) -gt 900 ]; then
        echo "sector 1 is not proving after 15 minutes; see $WORK/*.log" >&2
        "$BIN/lotus-miner" sectors status --log 1 >&2
        exit 1
    fi
    sleep 1
done

echo "==> lotus-miner sectors list"
"$BIN/lotus-miner" sectors list
echo "==> lotus-miner sectors status --log 1"
"$BIN/lotus-miner" sectors status --log 1
echo "==> lotus-miner storage find 1"
"$BIN/lotus-miner" storage find 1
echo "==> lotus-miner sealing workers"
"$BIN/lotus-miner" sealing workers
echo "==> lotus-miner sealing jobs"
"$BIN/lotus-miner" sealing jobs
echo "==> waiting for the sector's first WindowPoSt (the miner proves it, the devnet node verifies it)"
for _ in $(seq 1 120); do
    "$BIN/lotus-miner" proving info | grep -q "proven \[" && break
    sleep 1
done
echo "==> lotus-miner proving info"
"$BIN/lotus-miner" proving info
echo "==> lotus-miner proving deadlines"
"$BIN/lotus-miner" proving deadlines
