#!/usr/bin/env bash
# A local MLflow tracking server for kvxfer's recording tests (127.0.0.1 only).
#
#   scripts/mlflow-server.sh --install                 create the cached virtual environment
#   scripts/mlflow-server.sh start --dir D [--port P]  start a server (sqlite in D, artifacts in D),
#                                                       wait until healthy, print "pid=N port=P uri=U"
#   scripts/mlflow-server.sh stop --dir D              stop the server started with that D
#
# The virtual environment lives in $KVXFER_MLFLOW_VENV, or .cache/mlflow-venv under the
# repository; installing skips when it already holds a working `mlflow`.
# $KVXFER_MLFLOW_VERSION is the mlflow version pip installs (default 3.17.2, the one the tests
# were written against; set it empty for the newest).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${KVXFER_MLFLOW_VENV:-$repo/.cache/mlflow-venv}"

die() { echo "mlflow-server.sh: $*" >&2; exit 1; }

install() {
    if [ -x "$venv/bin/mlflow" ] && "$venv/bin/python" -c 'import mlflow' 2>/dev/null; then
        echo "mlflow venv present: $venv"
        return 0
    fi
    command -v python3 >/dev/null || die "python3 not found (apt-get install python3 python3-venv)"
    local started=$SECONDS
    rm -rf "$venv"
    mkdir -p "$(dirname "$venv")"
    python3 -m venv "$venv" || die "python3 -m venv failed (apt-get install python3-venv)"
    "$venv/bin/pip" install --quiet --upgrade pip
    local version="${KVXFER_MLFLOW_VERSION-3.17.2}"
    "$venv/bin/pip" install --quiet "mlflow${version:+==$version}"
    echo "mlflow $("$venv/bin/python" -c 'import mlflow; print(mlflow.__version__)') installed in $venv ($((SECONDS - started)) s)"
}

free_port() {
    "$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

start() {
    local dir="" port=""
    while [ $# -gt 0 ]; do
        case "$1" in
            --dir) dir="$2"; shift 2 ;;
            --port) port="$2"; shift 2 ;;
            *) die "start: unknown option $1" ;;
        esac
    done
    [ -n "$dir" ] || die "start: --dir is required"
    [ -x "$venv/bin/mlflow" ] || install
    mkdir -p "$dir/artifacts"
    dir="$(cd "$dir" && pwd)"
    [ -n "$port" ] || port="$(free_port)"
    if [ -f "$dir/server.pid" ] && kill -0 "$(cat "$dir/server.pid")" 2>/dev/null; then
        die "a server already runs for $dir (pid $(cat "$dir/server.pid"))"
    fi
    local started=$SECONDS
    # Its own session, so that stop can end the server and the workers it spawns together.
    setsid "$venv/bin/mlflow" server \
        --host 127.0.0.1 --port "$port" --workers 1 \
        --backend-store-uri "sqlite:///$dir/mlflow.db" \
        --artifacts-destination "$dir/artifacts" --serve-artifacts \
        >>"$dir/server.log" 2>&1 </dev/null &
    local pid=$!
    echo "$pid" >"$dir/server.pid"
    local i
    for i in $(seq 1 240); do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$dir/server.log" >&2
            die "mlflow server exited during start (log: $dir/server.log)"
        fi
        if "$venv/bin/python" - "$port" <<'PY' 2>/dev/null; then
import sys, urllib.request
with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health", timeout=2) as r:
    sys.exit(0 if r.status == 200 else 1)
PY
            echo "pid=$pid port=$port uri=http://127.0.0.1:$port start_s=$((SECONDS - started))"
            return 0
        fi
        sleep 0.5
    done
    stop --dir "$dir"
    die "mlflow server not healthy after 120 s (log: $dir/server.log)"
}

stop() {
    local dir=""
    while [ $# -gt 0 ]; do
        case "$1" in
            --dir) dir="$2"; shift 2 ;;
            *) die "stop: unknown option $1" ;;
        esac
    done
    [ -n "$dir" ] || die "stop: --dir is required"
    [ -f "$dir/server.pid" ] || { echo "no server for $dir"; return 0; }
    local pid
    pid="$(cat "$dir/server.pid")"
    # setsid made the server a session leader: its process group id is its pid.
    kill -TERM -- "-$pid" 2>/dev/null || true
    local i
    for i in $(seq 1 50); do
        kill -0 -- "-$pid" 2>/dev/null || break
        sleep 0.2
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
    rm -f "$dir/server.pid"
    echo "stopped pid=$pid"
}

case "${1:-}" in
    --install|install) install ;;
    start) shift; start "$@" ;;
    stop) shift; stop "$@" ;;
    *) die "usage: $0 --install | start --dir DIR [--port PORT] | stop --dir DIR" ;;
esac
