#!/usr/bin/env bash
# Install xraycache into the active Python environment, leaving exactly one working PIL:
# pillow-simd (compiled with AVX2 where the CPU has it) where it builds, stock Pillow otherwise.
#
#   bash scripts/install.sh            # the tool
#   bash scripts/install.sh --test     # + test tools (pytest, OpenCV for the notebook baseline, ruff, mypy)
#   bash scripts/install.sh --bench    # + benchmark tools
#   bash scripts/install.sh --extras dicom,dask   # any extras of pyproject.toml (dicom, dask, torch, ...)
#                                                 # (torch: install PyTorch for your platform first, see README)
#   XRAYCACHE_PIL=pillow bash scripts/install.sh   # force stock Pillow (e.g. to benchmark it)
#
# Pillow-SIMD is compiled once (~20 s) into a wheel kept in ${XDG_CACHE_HOME:-~/.cache}/xraycache/wheels/
# (XRAYCACHE_WHEELS overrides it), one folder per Python tag, platform and compiler flags; later runs
# install that wheel, and skip PIL entirely when the right Pillow-SIMD is already installed and working.
#
# Why a script: pillow-simd and Pillow both install the `PIL` package, matplotlib requires
# `pillow`, and uninstalling one deletes files the other wrote. So the project is installed first
# (which pulls stock Pillow in through matplotlib), then Pillow is removed and pillow-simd built
# in its place. pip will then say matplotlib's `pillow` requirement is missing; pillow-simd
# provides the same `PIL` API, and this script checks that it imports and works.
set -euo pipefail
cd "$(dirname "$0")/.."
extras=""
case "${1:-}" in
  "") ;;
  --test) extras="[test]" ;;
  --bench) extras="[bench]" ;;
  --dev) extras="[test,bench]" ;;
  --extras) extras="[${2:?--extras needs a comma-separated list, e.g. dicom,dask}]" ;;
  *) echo "usage: bash scripts/install.sh [--test|--bench|--dev|--extras LIST]" >&2; exit 2 ;;
esac
want="${XRAYCACHE_PIL:-simd}"
PY="${PYTHON:-python}"

pil_state() {  # prints: simd | pillow | broken
  "$PY" - <<'PY'
import importlib.metadata as md
def ver(name):
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None
try:
    import PIL
    from PIL import Image, _imaging  # noqa: F401
    Image.new("L", (4, 4)).resize((2, 2), Image.Resampling.BOX)
except Exception:
    print("broken")
else:
    simd, pillow = ver("pillow-simd"), ver("pillow")
    if simd == PIL.__version__ and pillow is None:
        print("simd")
    elif pillow == PIL.__version__ and simd is None:
        print("pillow")
    else:
        print("broken")
PY
}

install_pillow() {
  "$PY" -m pip uninstall --quiet -y pillow pillow-simd >/dev/null 2>&1 || true
  "$PY" -m pip install --quiet --no-deps --force-reinstall pillow
}

only_pil_missing() {  # true when installing the project would add nothing but itself and stock Pillow
  "$PY" -m pip install --dry-run --quiet --report - ".${extras}" 2>/dev/null | "$PY" -c '
import json, sys
try:
    names = {item["metadata"]["name"].lower() for item in json.load(sys.stdin)["install"]}
except Exception:
    sys.exit(1)
sys.exit(0 if names <= {"xraycache", "pillow"} else 1)'
}

simd_cc() {
  local cc="${CC:-cc}"
  if grep -qw avx2 /proc/cpuinfo 2>/dev/null; then cc="$cc -mavx2"; fi
  echo "$cc"
}

wheel_dir() {  # one folder per Python tag, platform and compiler flags: a wheel in it fits this build
  local tag key
  tag="$("$PY" -c 'import sys, sysconfig; print(f"cp{sys.version_info[0]}{sys.version_info[1]}-{sysconfig.get_platform()}")')"
  key="$(printf '%s|%s|%s' "$1" "${CFLAGS:-}" "$("$PY" -c 'import sys; print(sys.implementation.cache_tag, sys.abiflags)')" | cksum | cut -d' ' -f1)"
  echo "${XRAYCACHE_WHEELS:-${XDG_CACHE_HOME:-$HOME/.cache}/xraycache/wheels}/$tag-$key"
}

install_simd() {  # from the cached wheel, built first when there is none; false when it does not build
  local cc dir wheel
  cc="$(simd_cc)"
  dir="$(wheel_dir "$cc")"
  wheel="$(ls -t "$dir"/pillow_simd-*.whl 2>/dev/null | head -n 1 || true)"
  if [ -z "$wheel" ]; then
    echo "building pillow-simd with CC='$cc' (about 20 s, once: the wheel is kept in $dir) ..."
    mkdir -p "$dir"
    CC="$cc" "$PY" -m pip wheel --quiet --no-cache-dir --no-binary pillow-simd --no-deps -w "$dir" pillow-simd || return 1
    wheel="$(ls -t "$dir"/pillow_simd-*.whl 2>/dev/null | head -n 1 || true)"
    [ -n "$wheel" ] || return 1
  else
    echo "installing pillow-simd from $wheel"
  fi
  "$PY" -m pip uninstall --quiet -y pillow pillow-simd >/dev/null 2>&1 || true
  "$PY" -m pip install --quiet --no-deps --force-reinstall "$wheel"
}

state="$(pil_state)"
if [ "$want" = "simd" ] && [ "$state" = "simd" ] && only_pil_missing; then
  # everything else is in place: refresh xraycache itself and leave the working Pillow-SIMD alone
  "$PY" -m pip install --quiet --no-deps --force-reinstall ".${extras}"
  echo "pillow-simd is installed and works: kept"
else
  "$PY" -m pip install --quiet ".${extras}"  # pulls stock Pillow in through matplotlib
  state="$(pil_state)"
  if [ "$want" = "simd" ] && [ "$state" != "simd" ]; then
    if ! install_simd; then
      echo "pillow-simd did not build here (it needs a C compiler and the libjpeg/zlib headers); using stock Pillow" >&2
      install_pillow
    fi
  elif [ "$want" != "simd" ] && [ "$state" != "pillow" ]; then
    install_pillow
  fi
fi
state="$(pil_state)"
if [ "$state" = "broken" ]; then
  echo "PIL is broken after install; reinstalling stock Pillow" >&2
  install_pillow
fi
(cd / && "$PY" -m xraycache --version)  # the installed package (in the clone, python -m would run the source tree)
