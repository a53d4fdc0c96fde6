#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh), then runs every test: pytest, then ctest.
set -uo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
bash scripts/setup.sh || exit 1
echo "[test] set-up took $((SECONDS - start)) s" >&2
# What only the tests need: tests/test_video_playback.py checks the overlay video with ffprobe and
# plays it in apt's Chromium, driven by Playwright (pip; it uses /usr/bin/chromium, downloads no browser).
missing=()
for pkg in ffmpeg chromium; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
if ((${#missing[@]})); then
    echo "[test] apt: installing ${missing[*]}" >&2
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq || exit 1
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || exit 1
fi
if ! .venv/bin/python -c "import playwright" 2>/dev/null; then
    echo "[test] pip: installing playwright" >&2
    .venv/bin/python -m pip install -q playwright || exit 1
fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}   # tests set their own thread counts; avoid spinning
# The cache setup.sh compiled into: the tests' .pt2 compiles share it (and each other's).
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-$PWD/build/inductor-cache}
# One pytest worker per core, at most 4 (one test file each at a time, so a file's session
# fixtures are made once), each computing on one thread: pytest took 19 min 29 s on a 2-core AVX2
# EPYC (fresh clone: set-up 283 s, the whole .ci/run 1471 s).
# Passive OpenMP waiting keeps a test that uses 2 threads from spinning against the other worker.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
workers=$(nproc); [ "$workers" -gt 4 ] && workers=4

.venv/bin/python -m pytest -q -n "$workers" --dist loadfile --durations=15 "$@"
py=$?
[ $py -eq 5 ] && { echo "pytest: no tests collected"; py=0; }   # exit 5 = nothing collected

cpp=0
if [ -f build/CTestTestfile.cmake ]; then
    ctest --test-dir build --output-on-failure
    cpp=$?
fi
[ $py -eq 0 ] && [ $cpp -eq 0 ]
