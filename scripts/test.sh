#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh), then runs every test: pytest, then ctest.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}   # tests set their own thread counts; avoid spinning

.venv/bin/python -m pytest -q "$@"
py=$?
[ $py -eq 5 ] && { echo "pytest: no tests collected"; py=0; }   # exit 5 = nothing collected

cpp=0
if [ -f build/CTestTestfile.cmake ]; then
    ctest --test-dir build --output-on-failure
    cpp=$?
fi
[ $py -eq 0 ] && [ $cpp -eq 0 ]
