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

"$PY" -m pip install --quiet ".${extras}"

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

state="$(pil_state)"
if [ "$want" = "simd" ] && [ "$state" != "simd" ]; then
  cc="${CC:-cc}"
  if grep -qw avx2 /proc/cpuinfo 2>/dev/null; then cc="$cc -mavx2"; fi
  echo "building pillow-simd with CC='$cc' (about 20 s) ..."
  "$PY" -m pip uninstall --quiet -y pillow pillow-simd >/dev/null 2>&1 || true
  if ! CC="$cc" "$PY" -m pip install --quiet --no-deps --force-reinstall --no-binary pillow-simd pillow-simd; then
    echo "pillow-simd did not build here (it needs a C compiler and the libjpeg/zlib headers); using stock Pillow" >&2
    install_pillow
  fi
elif [ "$want" != "simd" ] && [ "$state" != "pillow" ]; then
  install_pillow
fi
state="$(pil_state)"
if [ "$state" = "broken" ]; then
  echo "PIL is broken after install; reinstalling stock Pillow" >&2
  install_pillow
fi
"$PY" -m xraycache --version
