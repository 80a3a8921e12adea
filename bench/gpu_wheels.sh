#!/usr/bin/env bash
# Wheels of nat's dependencies that a CUDA machine's image may lack, for `bench/gpu_check.sh` there.
#
#   bash bench/gpu_wheels.sh [PYTHON_VERSION]      # default 3.12; writes .whl/ (git-ignored locally)
#
# The versions are the ones installed in this checkout's .venv, so the GPU run uses what the tests ran
# with; the list is what the H200 image of 2026-12 lacked (pydantic, pymoo and their needs, mlxtend, ofa).
set -euo pipefail
cd "$(dirname "$0")/.."
PYV=${1:-3.12}
VENV_PY=${VENV_PY:-.venv/bin/python}
mkdir -p .whl
for name in pymoo pydantic pydantic_core annotated-types typing-inspection typing_extensions autograd cma \
  Deprecated alive-progress about-time graphemeu moocore cffi pycparser platformdirs mlxtend ofa; do
  version=$("$VENV_PY" -m pip show "$name" 2>/dev/null | awk '/^Version:/{print $2}')
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PYV" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    -d .whl "$name${version:+==$version}"
done
ls .whl
