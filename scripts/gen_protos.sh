#!/usr/bin/env bash
# Regenerates the code of every proto in protos/ (the one codegen path): the public API
# (render.v1, render.admin.v1) into the client distributions, Python in clients/python and
# TypeScript in clients/typescript/src/gen, and the stages' internal APIs into gen/python, which
# only the servers install.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
PUBLIC=(render/v1 render/admin/v1)

generate() {  # generate OUT_DIR PROTO_DIR...
  local out=$1
  shift
  mapfile -t files < <(cd protos && find "$@" -name '*.proto' | sort)
  (cd protos && "$OLDPWD/$PY" -m grpc_tools.protoc -I. \
    --python_out="$OLDPWD/$out" --pyi_out="$OLDPWD/$out" \
    --grpc_python_out="$OLDPWD/$out" "${files[@]}")
  # protoc writes no __init__.py; every folder below render/ is a regular package (so mypy and
  # setuptools see it), while render/ itself stays a namespace shared by the two distributions.
  find "$out/render" -mindepth 1 -type d -exec touch {}/__init__.py \;
}

rm -rf gen/python/render clients/python/render
mkdir -p gen/python clients/python
generate clients/python "${PUBLIC[@]}"
mapfile -t internal < <(cd protos && find render -mindepth 2 -maxdepth 2 -type d | sort | grep -vxF -e render/v1 -e render/admin/v1)
generate gen/python "${internal[@]}"

# TypeScript: buf runs protoc-gen-es as pinned in clients/typescript/package-lock.json (make protos
# installs it); the template names the public packages only and cleans its output first.
BUF=${BUF:-$(dirname "$PY")/buf}
PLUGIN=clients/typescript/node_modules/.bin/protoc-gen-es
if [[ ! -x $PLUGIN ]]; then
  echo "$PLUGIN is missing: run 'npm ci' in clients/typescript (make protos does)" >&2
  exit 1
fi
"$BUF" generate --template clients/typescript/buf.gen.yaml
