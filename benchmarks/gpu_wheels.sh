#!/usr/bin/env bash
# Fetches, on a machine that reaches the package registry, the wheels that the GPU machine lacks (hydra-core,
# omegaconf, antlr4-python3-runtime) into .gpu_wheels/ (ignored by git), in the versions this checkout's Python has.
# The GPU machine installs them offline: python3 -m benchmarks.gpu_check --wheels .gpu_wheels ... (docs/gpu_check.md).
#
#     bash benchmarks/gpu_wheels.sh            # PYTHON=/path/to/python to choose the interpreter whose versions to match
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
dest=.gpu_wheels
version() { "$PYTHON" -c "import importlib.metadata as m; print(m.version('$1'))"; }
rm -rf "$dest"
mkdir -p "$dest"
# pure-Python wheels (py3-none-any): they install on the GPU machine's Python whatever its version
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --dest "$dest" \
    "hydra-core==$(version hydra-core)" "omegaconf==$(version omegaconf)"
# antlr4-python3-runtime 4.9.x, the version hydra-core 1.3 requires, is published as source only: its wheel is built
# here, since building it there would need the registry (setuptools in an isolated build)
"$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$dest" "antlr4-python3-runtime==$(version antlr4-python3-runtime)"
ls -l "$dest"
