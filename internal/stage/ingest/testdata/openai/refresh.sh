#!/usr/bin/env bash
# Refreshes schemas.json from the official OpenAI OpenAPI specification
# (github.com/openai/openai-openapi) and records the commit it came from.
#
#   internal/stage/ingest/testdata/openai/refresh.sh            # the newest commit
#   internal/stage/ingest/testdata/openai/refresh.sh COMMIT     # a given commit
#
# Then run the conformance suite (go test ./internal/stage/ingest -run Conformance)
# and update the README's "OpenAI API version" line with the commit and
# version it prints.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo=https://github.com/openai/openai-openapi
ref="${1:-HEAD}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
git -C "$tmp" init -q
git -C "$tmp" fetch -q --depth 1 "$repo" "$ref"
commit="$(git -C "$tmp" rev-parse FETCH_HEAD)"
date="$(git -C "$tmp" log -1 --format=%cI FETCH_HEAD)"
git -C "$tmp" show FETCH_HEAD:openapi.json > "$tmp/openapi.json"
(cd "$here" && go run extract.go -commit "$commit" -date "$date" < "$tmp/openapi.json" > "$tmp/schemas.json")
mv "$tmp/schemas.json" "$here/schemas.json"
echo "schemas.json: $repo at $commit ($date)"
