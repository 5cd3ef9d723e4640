#!/usr/bin/env bash
# Installs what kvxfer needs on Debian 12, idempotently: only missing packages are installed.
#
#   scripts/setup.sh          build and run dependencies (libfabric, UCX, clang for bindgen)
#   scripts/setup.sh --test   also what the test suite uses (reference tools, python3-venv,
#                             the MLflow virtual environment)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
want_tests=0
for a in "$@"; do
    case "$a" in
        --test) want_tests=1 ;;
        -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
        *) echo "setup.sh: unknown option $a" >&2; exit 2 ;;
    esac
done

# Build: libfabric headers and library, clang/libclang for bindgen, pkg-config.
# Run: the fabric libraries; the reference tools (fi_pingpong, ucx_perftest) for cross-checks.
packages=(libfabric-dev libfabric-bin libclang-dev clang pkg-config libucx-dev ucx-utils)
# Plots (kvxfer analyze): plotters finds a font through fontconfig and draws it with FreeType.
packages+=(libfontconfig-dev libfreetype-dev fonts-dejavu-core)
if [ "$want_tests" = 1 ]; then
    packages+=(python3 python3-venv iproute2)
fi

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -gt 0 ]; then
    echo "setup.sh: installing ${missing[*]}" >&2
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    echo "setup.sh: system packages present" >&2
fi

if [ "$want_tests" = 1 ]; then
    bash "$repo/scripts/mlflow-server.sh" --install >&2
fi
