#!/usr/bin/env bash
# Opt-in: swap Pillow-SIMD in for the stock Pillow that `pip install .` installed, in the active environment.
#
#   bash scripts/pillow-simd.sh          # build (once, cached) and install Pillow-SIMD in place of Pillow
#   bash scripts/pillow-simd.sh --undo   # back to stock Pillow
#
# Measured gain on the default build (--filter area, the project's own resize kernel): 1.03x (docs/performance.md).
# Pillow-SIMD vectorises Pillow's own resampling, so it helps --filter box|bilinear|hamming|lanczos more.
#
# What it costs (docs/performance.md, "Pillow-SIMD"):
# - it compiles from source: a C compiler and the libjpeg/zlib headers (Debian: build-essential libjpeg-dev
#   zlib1g-dev); about a minute on a 2-core machine, once: the wheel is kept in
#   ${XRAYCACHE_WHEELS:-${XDG_CACHE_HOME:-~/.cache}/xraycache/wheels}/, one folder per Python, platform and flags;
# - `pip check` then reports the `pillow` requirement of matplotlib and xraycache as missing: Pillow-SIMD installs the same `PIL`
#   package under another name, which pip cannot know;
# - the next `pip install` of anything that requires `pillow` (torchvision, ...) puts stock Pillow back over it;
#   `xraycache --version` and every build then say so in one line; run this script again.
# A cache built with one is updated, not refused, by a build with the other: only the images Pillow's resampling
# made are decoded again (docs/reliability.md).
set -euo pipefail
PY="${PYTHON:-python}"
undo=0
case "${1:-}" in
  "") ;;
  --undo) undo=1 ;;
  -h | --help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "usage: bash scripts/pillow-simd.sh [--undo]" >&2; exit 2 ;;
esac

pil_works() {
  "$PY" -c 'from PIL import Image, _imaging; Image.new("L", (4, 4)).resize((2, 2), Image.Resampling.BOX)' 2>/dev/null
}

stock_pillow() {
  "$PY" -m pip uninstall -y pillow pillow-simd >/dev/null 2>&1 || true
  "$PY" -m pip install --no-deps --force-reinstall pillow
}

show_version() {
  (cd / && "$PY" -m xraycache --version 2>&1) || true  # from / : the installed package, not a source tree
}

if [ "$undo" = 1 ]; then
  stock_pillow
  show_version
  exit 0
fi

cc="${CC:-cc}"
if grep -qw avx2 /proc/cpuinfo 2>/dev/null; then cc="$cc -mavx2"; fi
tag="$("$PY" -c 'import sys, sysconfig; print(f"cp{sys.version_info[0]}{sys.version_info[1]}-{sysconfig.get_platform()}")')"
key="$(printf '%s|%s|%s' "$cc" "${CFLAGS:-}" "$("$PY" -c 'import sys; print(sys.implementation.cache_tag, sys.abiflags)')" | cksum | cut -d' ' -f1)"
dir="${XRAYCACHE_WHEELS:-${XDG_CACHE_HOME:-$HOME/.cache}/xraycache/wheels}/$tag-$key"
wheel="$(ls -t "$dir"/pillow_simd-*.whl 2>/dev/null | head -n 1 || true)"
if [ -z "$wheel" ]; then
  echo "building Pillow-SIMD with CC='$cc' (about a minute, once: the wheel is kept in $dir)"
  mkdir -p "$dir"
  if ! CC="$cc" "$PY" -m pip wheel --no-cache-dir --no-binary pillow-simd --no-deps -w "$dir" pillow-simd; then
    echo "error: Pillow-SIMD did not build (it needs a C compiler and the libjpeg/zlib headers, e.g. Debian's" \
      "build-essential libjpeg-dev zlib1g-dev); stock Pillow is still installed" >&2
    exit 1
  fi
  wheel="$(ls -t "$dir"/pillow_simd-*.whl | head -n 1)"
fi
echo "installing $wheel in place of stock Pillow"
"$PY" -m pip uninstall -y pillow pillow-simd >/dev/null 2>&1 || true
"$PY" -m pip install --no-deps --force-reinstall "$wheel"
if ! pil_works; then
  echo "error: Pillow-SIMD does not import here; stock Pillow put back" >&2
  stock_pillow
  exit 1
fi
show_version
echo "note: \`pip check\` now reports the \`pillow\` requirement of matplotlib and xraycache as missing (Pillow-SIMD" \
  "provides the same PIL); \`bash scripts/pillow-simd.sh --undo\` goes back to stock Pillow"
