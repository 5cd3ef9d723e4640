#!/usr/bin/env bash
# Installs what kvxfer needs on Debian 12, idempotently: only missing packages are installed.
#
#   scripts/setup.sh          build and run dependencies (libfabric, UCX, clang for bindgen,
#                             patchelf for the GPU bundle)
#   scripts/setup.sh --test   also what the test suite uses (reference tools, python3-venv,
#                             the MLflow virtual environment, NIXL's engine in it)
#
# UCX 1.22.0, the UCX that NIXL ships, comes from PyPI's libucx-cu12 wheel into .cache/ucx
# (libucx/ is its prefix: headers, libraries, ucx_info, ucx_perftest); sys/ucx-sys builds
# against it unless UCX_DIR names another. .cache/ucx/bin holds ucx_perftest and ucx_info
# launchers that load that copy's libraries (the wheel's binaries find them only through
# LD_LIBRARY_PATH).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
want_tests=0
for a in "$@"; do
    case "$a" in
        --test) want_tests=1 ;;
        -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
        *) echo "setup.sh: unknown option $a" >&2; exit 2 ;;
    esac
done

# Build: libfabric headers and library, clang/libclang for bindgen, pkg-config.
# Run: the fabric libraries; the reference tools (fi_pingpong, ucx_perftest) for cross-checks.
packages=(libfabric-dev libfabric-bin libclang-dev clang pkg-config libucx-dev ucx-utils python3 python3-pip)
# Plots (kvxfer analyze): plotters finds a font through fontconfig and draws it with FreeType.
packages+=(libfontconfig-dev libfreetype-dev fonts-dejavu-core)
# xfer --etcd: the etcd client crate compiles etcd's gRPC protocol files with protoc, which
# finds the well-known types (google/protobuf/*.proto) in libprotobuf-dev.
packages+=(protobuf-compiler libprotobuf-dev)
# The GPU bundle (scripts/device-bundle.sh): patchelf points the bundled libraries at each other.
packages+=(patchelf)
if [ "$want_tests" = 1 ]; then
    packages+=(python3 python3-venv iproute2)
    # The etcd server the --etcd tests start on 127.0.0.1 (3.4 on Debian 12).
    packages+=(etcd-server)
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

ucx_version=1.22.0
ucx_root="$repo/.cache/ucx"
if [ "$(cat "$ucx_root/VERSION" 2>/dev/null)" = "$ucx_version" ] && [ -x "$ucx_root/bin/ucx_perftest" ]; then
    echo "setup.sh: UCX $ucx_version present in $ucx_root" >&2
else
    echo "setup.sh: installing UCX $ucx_version (PyPI libucx-cu12) into $ucx_root" >&2
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
        --dest "$tmp" "libucx-cu12==$ucx_version" >&2
    rm -rf "$ucx_root.new"
    mkdir -p "$ucx_root.new/bin"
    python3 -m zipfile -e "$tmp"/libucx_cu12-*.whl "$ucx_root.new"
    chmod +x "$ucx_root.new"/libucx/bin/*
    # The wheel's pkg-config files name the folder it was built in.
    sed -i "s|^prefix *=.*|prefix = $ucx_root/libucx|" "$ucx_root.new"/libucx/lib/pkgconfig/*.pc
    for tool in ucx_perftest ucx_info; do
        cat >"$ucx_root.new/bin/$tool" <<EOF
#!/bin/sh
# UCX $ucx_version's $tool with its own libraries (installed by scripts/setup.sh).
prefix="\$(cd "\$(dirname "\$0")/../libucx" && pwd)"
LD_LIBRARY_PATH="\$prefix/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" exec "\$prefix/bin/$tool" "\$@"
EOF
        chmod +x "$ucx_root.new/bin/$tool"
    done
    echo "$ucx_version" >"$ucx_root.new/VERSION"
    rm -rf "$ucx_root"
    mv "$ucx_root.new" "$ucx_root"
    # ucx-sys chose its UCX when it was last built: make cargo ask again.
    touch "$repo/sys/ucx-sys/wrapper.h"
fi

if [ "$want_tests" = 1 ]; then
    bash "$repo/scripts/mlflow-server.sh" --install >&2
    # NIXL's engine (xfer's twin, scripts/nixl_xfer.py) in the same venv: the nixl-cu12 wheel
    # (cp311) without its declared dependencies (torch: DRAM transfers need neither it nor
    # CUDA), plus numpy.
    venv="${KVXFER_MLFLOW_VENV:-$repo/.cache/mlflow-venv}"
    if "$venv/bin/python" "$repo/scripts/nixl_xfer.py" --check 2>/dev/null; then
        echo "setup.sh: NIXL present in $venv" >&2
    else
        echo "setup.sh: installing NIXL 1.5.1 (PyPI nixl-cu12, --no-deps) and numpy into $venv" >&2
        "$venv/bin/pip" install --quiet --disable-pip-version-check numpy >&2
        "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps nixl-cu12==1.5.1 >&2
    fi
fi
