#!/usr/bin/env bash
# Installs everything ema-seg needs: apt packages, then .venv with torch and emaseg itself (one pip
# install: package, bindings, CLI, C++ SDK). Idempotent: a second run only checks and exits in seconds.
#   EMASEG_TORCH  pip spec for torch (default: the CPU build torch==2.13.0 without an NVIDIA GPU,
#                 "torch>=2.5,<2.15" with one). Point pip at another index with PIP_INDEX_URL.
#   EMASEG_JOBS   parallel C++ compile jobs (default: number of cores).
#   TORCHINDUCTOR_CACHE_DIR  Inductor's cache (default: build/inductor-cache, see below).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# One Inductor cache for every compile of a checkout: set-up's .pt2 packages, and (test.sh
# exports the same) every pytest worker and its compile children, run after run. A graph
# compiled once (the test models are compiled by several tests) is loaded, not recompiled.
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-$ROOT/build/inductor-cache}
log() { printf '\033[1;34m[setup]\033[0m %s\n' "$*" >&2; }

# --- system packages: compiler, CMake, OpenCV, FFmpeg's libraries (and its CLI, for tests and benchmarks), nlohmann/json, CLI11, cpp-httplib ---
missing=()
for pkg in g++ cmake pkg-config libopencv-dev nlohmann-json3-dev libcli11-dev \
           libavformat-dev libavcodec-dev libavutil-dev libswscale-dev ffmpeg libcpp-httplib-dev; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
python3 -c "import ensurepip, venv" 2>/dev/null || missing+=(python3-venv)
if ((${#missing[@]})); then
    log "apt: installing ${missing[*]}"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- Python environment ----------------------------------------------------------------------------
PY=python3
[ -x .venv/bin/python ] || { log "creating .venv"; $PY -m venv .venv; }
VPY=$ROOT/.venv/bin/python
# What the build of emaseg needs beside pip (it builds without isolation, against this torch).
prereqs=()
if ! "$VPY" -c "import torch" 2>/dev/null; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
        prereqs+=("${EMASEG_TORCH:-"torch>=2.5,<2.15"}")
    else
        prereqs+=("${EMASEG_TORCH:-"torch==2.13.0"}")
    fi
fi
"$VPY" -c "import scikit_build_core, pybind11" 2>/dev/null || prereqs+=("scikit-build-core>=1.1,<2" "pybind11>=3")
if ((${#prereqs[@]})); then
    log "pip: installing ${prereqs[*]}"
    "$VPY" -m pip install -q "${prereqs[@]}"
fi
# --- emaseg itself: one pip install builds and installs the package, the bindings, the CLI and
# the C++ SDK (scikit-build-core driving CMakeLists.txt). Editable: the Python sources stay live
# in the checkout. No build isolation: it compiles against the torch installed above, and the
# wheel's metadata pins that torch's major.minor. EMASEG_DEV_BUILD=1 selects the developers'
# build (pyproject.toml): a persistent build/ that recompiles only what changed, with the C++
# tests (ctest --test-dir build) and the CLI at build/ema_seg. Rerun after editing C++ code.
# Skipped when nothing it builds from changed since the last install.
# A build/ configured by plain CMake before (no scikit-build-core) is reconfigured from scratch.
if [ -f build/CMakeCache.txt ] && ! grep -q '^SKBUILD' build/CMakeCache.txt; then
    rm -rf build/CMakeCache.txt build/CMakeFiles
fi
rm -f python/emaseg/_runtime.*.so   # a plain CMake build's module would shadow the installed one
# The installed torch's version ("2.13.0+cpu"), from its metadata: importing torch takes seconds.
torch_version() { "$VPY" -c "import importlib.metadata as m; print(m.version('torch'))"; }
build_stamp() {
    { find CMakeLists.txt pyproject.toml cmake cpp build_support -type f | sort | xargs sha256sum;
      torch_version; } | sha256sum | cut -c1-32
}
stamp=.venv/.emaseg-installed
want=$(build_stamp)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || ! "$VPY" -c "import emaseg.installed as i; i.install_dir()" 2>/dev/null; then
    log "pip: building and installing emaseg (editable, build/) with its dev extras"
    EMASEG_DEV_BUILD=1 "$VPY" -m pip install -q --no-build-isolation -e ".[dev]" \
        -C "build.tool-args=-j${EMASEG_JOBS:-$(nproc)}" || { log "pip install failed"; exit 1; }
    echo "$want" > "$stamp"
fi

# --- bundled default: demo model exported to TorchScript, sample video ---------------------------
# Re-exported when missing or stale: the stamp beside it hashes what the file is made from (the
# checkpoint, the emaseg code that builds the exported module, the torch version).
SAMPLE_SIZE=256x512  # HxW of the sample video data/sample/street.mp4
# The aspect ratios (W:H) whose network input size the default .pt2 is compiled for: every 16:9
# and 4:3 camera (720p, 1080p, 4K, webcams, PAL, 1440x1080), the sample's 2:1, portrait phone video.
ASPECT_RATIOS="16:9,4:3,2:1,9:16"
export_stamp() {
    { sha256sum models/emanet_demo.pth; find python/emaseg -name '*.py' | sort | xargs sha256sum;
      torch_version; } | sha256sum | cut -c1-32
}
if [ -f models/emanet_demo.pth ]; then
    stamp_want=$(export_stamp)
    if [ ! -f models/emanet_demo.pt ] || [ "$(cat models/.emanet_demo.pt.stamp 2>/dev/null)" != "$stamp_want" ]; then
        log "exporting models/emanet_demo.pth -> models/emanet_demo.pt"
        "$VPY" python/export.py --checkpoint models/emanet_demo.pth --output models/emanet_demo.pt
        echo "$stamp_want" > models/.emanet_demo.pt.stamp
    fi
    # The fast default: an AOTInductor package compiled for this CPU and torch (~1.5 min), with
    # the network compiled for the network input size of each aspect ratio above (any frame size
    # of that ratio runs it) and frozen by TorchScript for every other size (README, ".pt2 packages").
    if [ ! -f models/emanet_demo.pt2 ] || [ "$(cat models/.emanet_demo.pt2.stamp 2>/dev/null)" != "$stamp_want $ASPECT_RATIOS" ]; then
        log "compiling models/emanet_demo.pth -> models/emanet_demo.pt2 (aspect ratios $ASPECT_RATIOS, any other size too)"
        rm -f models/emanet_demo.pt2 models/.emanet_demo.pt2.stamp
        if "$VPY" python/export.py --checkpoint models/emanet_demo.pth --output models/emanet_demo.pt2 \
                --aspect-ratios "$ASPECT_RATIOS"; then
            echo "$stamp_want $ASPECT_RATIOS" > models/.emanet_demo.pt2.stamp
        else
            log "warning: could not compile the .pt2 (see above); the CLI uses models/emanet_demo.pt"
        fi
    fi
fi
if [ -f scripts/make_synthetic.py ] && [ ! -f data/sample/street.mp4 ]; then
    log "generating the sample video data/sample/street.mp4"
    "$VPY" scripts/make_synthetic.py --out data/sample --train 0 --val 0 --size "$SAMPLE_SIZE" --seed 7 \
        --video data/sample/street.mp4 --frames 100 --fps 10 --quiet >/dev/null
fi
log "ready"
