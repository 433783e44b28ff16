#!/usr/bin/env bash
# Regenerates the Python package under gen/python from protos/ (the one codegen path).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
rm -rf gen/python/render
mkdir -p gen/python
mapfile -t files < <(cd protos && find render -name '*.proto' | sort)
(cd protos && "$OLDPWD/$PY" -m grpc_tools.protoc -I. \
  --python_out="$OLDPWD/gen/python" --pyi_out="$OLDPWD/gen/python" \
  --grpc_python_out="$OLDPWD/gen/python" "${files[@]}")
# protoc writes no __init__.py; the generated tree is a regular package so mypy and setuptools see it.
find gen/python/render -type d -exec touch {}/__init__.py \;
