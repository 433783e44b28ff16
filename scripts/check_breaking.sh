#!/usr/bin/env bash
# The public APIs (render.v1, render.admin.v1) may only change compatibly: the protos as they are
# now are checked with `buf breaking` against every earlier version of them that git remembers, so
# a field or method published once and dropped later fails here however many commits ago it was.
set -euo pipefail
cd "$(dirname "$0")/.."
BUF=${BUF:-.venv/bin/buf}
PUBLIC=(protos/render/v1 protos/render/admin/v1)
mapfile -t versions < <(git log --format=%H -- "${PUBLIC[@]}")
if [ "$(git rev-parse --is-shallow-repository)" = true ]; then
  echo "note: a shallow clone: only the versions it holds are checked" >&2
fi
checked=0
for commit in "${versions[@]}"; do
  for path in "${PUBLIC[@]}"; do
    git cat-file -e "$commit:$path" 2>/dev/null || continue
    "$BUF" breaking --against ".git#ref=$commit" --path "$path"
  done
  checked=$((checked + 1))
done
echo "buf breaking: the public APIs are compatible with all $checked earlier versions"
