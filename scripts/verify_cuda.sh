#!/usr/bin/env bash
# Every CUDA leg in one command, on a machine with an NVIDIA GPU (none is available where this
# project is developed: see README, "What was verified where"). Under 10 minutes on one GPU.
#
#   bash scripts/verify_cuda.sh
#
# 1. .venv-cuda: torch 2.13 from PyPI (the Linux wheel there is the CUDA build);
# 2. emaseg pip-installed there, compiled in build-cuda/ against that LibTorch (needs the CUDA
#    toolkit's nvcc and headers, which LibTorch's CMake package asks for; /usr/local/cuda is searched);
# 3. scripts/verify_cuda.py: one line per check (PASS/FAIL/SKIP), exit 1 if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
log() { printf '\033[1;34m[verify_cuda]\033[0m %s\n' "$*" >&2; }

if ! nvidia-smi -L >/dev/null 2>&1; then
    echo "FAIL cuda device: nvidia-smi finds no NVIDIA GPU"
    exit 1
fi
nvidia-smi -L >&2

bash scripts/setup.sh >&2 || { echo "FAIL setup: scripts/setup.sh failed (above)"; exit 1; }  # apt packages, sample video

VENV=.venv-cuda
[ -x $VENV/bin/python ] || python3 -m venv $VENV
if ! $VENV/bin/python -c "import torch, sys; sys.exit(not torch.cuda.is_available())" 2>/dev/null; then
    log "pip: torch ${EMASEG_CUDA_TORCH:-torch==2.13.0} (CUDA build) into $VENV"
    $VENV/bin/python -m pip install -q "${EMASEG_CUDA_TORCH:-torch==2.13.0}" || { echo "FAIL install: pip"; exit 1; }
fi

# emaseg itself, built against that CUDA LibTorch: without build isolation (an isolated build
# would compile against another torch), into the persistent build-cuda/, so the CLI is
# build-cuda/ema_seg and the bindings are the venv's emaseg.runtime.
cli=build-cuda/ema_seg
[ -d /usr/local/cuda/bin ] && export PATH="/usr/local/cuda/bin:$PATH"
log "pip: emaseg into $VENV, built in build-cuda/ against its LibTorch"
if $VENV/bin/python -m pip install -q "scikit-build-core>=1.1,<2" "pybind11>=3" >build-cuda.log 2>&1 &&
   $VENV/bin/python -m pip install --no-build-isolation -C build-dir=build-cuda \
        -C "build.tool-args=-j$(nproc)" -e ".[dev]" >>build-cuda.log 2>&1; then
    echo "PASS build: $cli and emaseg.runtime against CUDA LibTorch"
else
    echo "FAIL build: see build-cuda.log ($(grep -m1 -iE 'error|could not find' build-cuda.log))"
    exit 1
fi

OMP_NUM_THREADS=${OMP_NUM_THREADS:-4} $VENV/bin/python scripts/verify_cuda.py --cli "$cli" \
    --work "${EMASEG_CUDA_WORK:-/tmp/emaseg-cuda}"
