#!/usr/bin/env bash
# Builds .device/ (git-ignored): the GPU checks of kvxfer, ready to run on a GPU host that has
# nothing but the NVIDIA driver (no Rust, no libfabric, no UCX):
#
#   bash scripts/setup.sh && bash scripts/device-bundle.sh [DEST]     (DEST default .device)
#
#   bin/kvxfer        kvxfer --features cuda, cargo profile `device` (release, thin LTO), stripped
#   tests/lib, tests/xfer_mem   the cuda build's device test executables, stripped
#   lib/              every shared library these load except the C runtime and the NVIDIA
#                     driver: UCX (libucp/uct/ucs/ucm, lib/ucx/ its modules, cuda among them),
#                     libfabric, and the dependencies of all, as ldd finds them; stripped,
#                     each with an rpath of $ORIGIN, so nothing is looked up on the host
#   check.sh          scripts/device-check.sh: every GPU check under its own time limit
#   README            how to run it
#
# Prints the bundle's size and file count; fails above 56 MiB. Needs patchelf (setup.sh).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${1:-$repo/.device}"
max_bytes=$((56 << 20))
cd "$repo"
for tool in patchelf strip readelf ldd; do
    command -v "$tool" >/dev/null || {
        echo "device-bundle: $tool is missing (bash scripts/setup.sh installs it)" >&2
        exit 2
    }
done

# The C runtime (glibc, libstdc++, libgcc_s) and the NVIDIA driver stay the host's.
c_runtime='^(linux-vdso\.so|linux-gate\.so|ld-linux[-a-z0-9_.]*\.so|libc\.so|libm\.so|libdl\.so|libpthread\.so|librt\.so|libresolv\.so|libutil\.so|libstdc\+\+\.so|libgcc_s\.so)'
driver='^(libcuda\.so|libnvidia-ml\.so)'

new="$dest.new"
rm -rf "$new"
mkdir -p "$new/lib/ucx"
bash scripts/device-build.sh device "$new" copy
cp scripts/device-check.sh "$new/check.sh"
chmod +x "$new/check.sh"

# UCX: the folder of the libucp kvxfer loads (at run time, when a command needs UCX, so ldd
# shows none: `kvxfer info --ucx` names it), libucp itself, and UCX's modules (dlopened too);
# ucx_perftest's own module is left out.
ucx_lib=$("$new/bin/kvxfer" info --ucx --json 2>/dev/null |
    sed -n 's/^[[:space:]]*"ucx_library": "\(.*\)\/libucp\.so[.0-9]*",\{0,1\}$/\1/p')
if [ -z "$ucx_lib" ] || [ ! -e "$ucx_lib/libucp.so.0" ]; then
    echo "device-bundle: kvxfer names no libucp.so.0 it loads ($new/bin/kvxfer info --ucx)" >&2
    exit 2
fi
# Where each copied library came from: before its rpath is fixed, ldd looks at the original,
# whose $ORIGIN-relative rpath finds what ships beside it (a UCX module its CUDA runtime).
declare -A src=()
cp -L "$ucx_lib/libucp.so.0" "$new/lib/libucp.so.0"
src["$new/lib/libucp.so.0"]="$ucx_lib/libucp.so.0"
for m in "$ucx_lib"/ucx/lib*.so.[0-9]*; do
    base=$(basename "$m")
    case "$base" in libucx_perftest*) continue ;; esac
    # One file per module: the name UCX loads (libuct_cuda.so.0).
    [[ "$base" =~ ^lib[a-z_]+\.so\.[0-9]+$ ]] || continue
    cp -L "$m" "$new/lib/ucx/$base"
    src["$new/lib/ucx/$base"]="$m"
done

# libfabric: loaded at run time as well, when a command opens a fabric (`kvxfer info --json`
# names the file); its dependencies follow in the closure below.
fabric_lib=$("$new/bin/kvxfer" info --json 2>/dev/null |
    sed -n 's/^[[:space:]]*"libfabric_library": "\(.*\)",\{0,1\}$/\1/p')
if [ -z "$fabric_lib" ] || [ ! -e "$fabric_lib" ]; then
    echo "device-bundle: kvxfer names no libfabric.so.1 it loads ($new/bin/kvxfer info --json)" >&2
    exit 2
fi
cp -L "$fabric_lib" "$new/lib/libfabric.so.1"
src["$new/lib/libfabric.so.1"]="$fabric_lib"

elves() { # every ELF file of the bundle
    local f
    for f in "$new"/bin/* "$new"/tests/* "$new"/lib/* "$new"/lib/ucx/*; do
        [ -f "$f" ] && readelf -h "$f" >/dev/null 2>&1 && echo "$f"
    done
}
# rpath_of FILE: where FILE finds the bundle's libraries.
rpath_of() {
    case "$1" in
        "$new"/lib/ucx/*) echo '$ORIGIN/..' ;;
        "$new"/lib/*) echo '$ORIGIN' ;;
        *) echo '$ORIGIN/../lib' ;;
    esac
}
fix() { # FILE: stripped, and loading the bundle's libraries first (DT_RPATH: before LD_LIBRARY_PATH)
    chmod u+w "$1"
    strip --strip-unneeded "$1" 2>/dev/null || strip "$1"
    patchelf --force-rpath --set-rpath "$(rpath_of "$1")" "$1"
}
# closure FIX: copies into lib/ every library the bundle's files load, as ldd finds them, until
# nothing new turns up (FIX=1: each copy fixed at once, and ldd reads the bundle's files; FIX=0:
# ldd reads the originals, which find their libraries as built). A name already in lib/ is
# never taken again, and a UCX library comes from kvxfer's UCX folder, never the host's.
closure() {
    local added f name arrow path _ from
    while :; do
        added=0
        while read -r f; do
            while read -r name arrow path _; do
                [ "$arrow" = "=>" ] || continue
                [[ "$name" =~ $c_runtime ]] && continue
                [ -e "$new/lib/$name" ] && continue
                if [ -e "$ucx_lib/$name" ]; then
                    path="$ucx_lib/$name"
                elif [ "$path" = "not" ]; then
                    [[ "$name" =~ $driver ]] && continue
                    echo "device-bundle: $f needs $name, which ldd does not find" >&2
                    exit 2
                fi
                cp -L "$path" "$new/lib/$name"
                src["$new/lib/$name"]="$path"
                [ "$1" = 1 ] && fix "$new/lib/$name"
                added=1
            done < <(if [ "$1" = 0 ]; then from="${src[$f]:-$f}"; else from="$f"; fi; ldd "$from" 2>/dev/null)
        done < <(elves)
        [ "$added" = 1 ] || break
    done
}
closure 0
while read -r f; do fix "$f"; done < <(elves)
closure 1

glibc=$(while read -r f; do readelf -V --wide "$f"; done < <(elves) |
    grep -o 'GLIBC_[0-9][0-9.]*' | sort -Vu | tail -n 1)
rows=$(bash "$new/check.sh" --list)
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
cat >"$new/README" <<EOF
kvxfer GPU checks, self-contained (scripts/device-bundle.sh, commit $commit, $(date -u +%Y-%m-%d)).
Needs on the GPU host: the NVIDIA driver (libcuda.so.1), bash, coreutils (timeout), tar, gzip,
python3 (only to read figures), ${glibc/_/ } or later. Everything else is in here.

Run it, from the root of the checkout that holds .device/ (git-ignored), with one call of the
device tool's run:
    command:   bash .device/check.sh "\$OUT"
    carry:     [".device"]
    timeout_s: 480
Elsewhere: copy this folder to the GPU host and run  bash check.sh OUT_DIR  (any folder).

It writes three files to OUT_DIR: summary.md (the table, the headline figures: UCX VRAM and
DRAM GB/s at 55M/224M/672M, cuMemAlloc against --vmm, registration of 672M in VRAM cold and
cached, staging copy GB/s each way, tag_lat in CUDA memory at 8 B and 64 KiB; the GPU listing),
results.json (every row: name, status, figure, seconds, first error line; the figures by key),
runs.tar.gz (each row's log and kvxfer result documents).

The rows (each under its own limit; a row past it reads "timeout"):
$rows

A pass: exit status 0 and every row "pass". The libfabric VRAM rows (fi-vram, pingpong,
rma-pingpong) pass with "refused as expected" where the bundled libfabric (Debian's, tcp, no
FI_HMEM) cannot take device memory; staging moves VRAM through host memory and must run.
Exit status 1: no GPU (the CUDA driver opens none): the GPU rows read "skipped" with the reason,
the DRAM rows still run. 3: a row failed or timed out (the table names it; its log is in
runs.tar.gz). 2: bad use.
EOF

bytes=$(du -sb "$new" | cut -f1)
files=$(find "$new" -type f | wc -l)
if [ "$bytes" -gt "$max_bytes" ]; then
    echo "device-bundle: $new is $bytes bytes, over the 56 MiB the GPU machine takes" >&2
    exit 3
fi
rm -rf "$dest"
mv "$new" "$dest"
echo "device-bundle: $dest: $files files, $bytes bytes ($(awk -v b="$bytes" 'BEGIN{printf "%.1f", b/1048576}') MiB), needs ${glibc/_/ }+" >&2
