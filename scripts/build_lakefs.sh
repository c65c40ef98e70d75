#!/usr/bin/env bash
# Build the lakeFS server from its Go module at the release pinned in pyproject.toml.
# The release's module leaves out generated code (OpenAPI server/client stubs) and the
# web UI bundle, so we run the module's own code generators and embed a one-page
# placeholder UI (the UI is not used by mlv-spark). Result: .cache/bin/lakefs-<version>.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
version="$(python3 -c 'import tomllib,sys; print(tomllib.load(open(sys.argv[1],"rb"))["tool"]["mlv-spark"]["lakefs-version"])' "$root/pyproject.toml")"
out="$root/.cache/bin/lakefs-$version"
if [ -x "$out" ]; then echo "lakefs: $out cached"; exit 0; fi
command -v go >/dev/null || { echo "error: Go is required to build lakeFS (install Go >= 1.22)" >&2; exit 1; }

export GOFLAGS=-mod=mod GOTOOLCHAIN=local
work="$root/.cache/lakefs-src"
rm -rf "$work"; mkdir -p "$work" "$root/.cache/bin"
echo "lakefs: downloading github.com/treeverse/lakefs@$version from the Go module proxy"
dir="$(cd "$work" && go mod download -json "github.com/treeverse/lakefs@$version" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
cp -r "$dir/." "$work/src"; chmod -R u+w "$work/src"; cd "$work/src"
echo "lakefs: generating API code"
go generate ./pkg/api/apigen ./pkg/auth ./pkg/authentication ./pkg/permissions
mkdir -p webui/dist
printf '<!doctype html><title>lakeFS</title><p>lakeFS %s (built by mlv-spark without the web UI; use the API or lakectl).</p>\n' "$version" > webui/dist/index.html
echo "lakefs: compiling (a few minutes on a cold cache)"
started=$(date +%s)
go build -trimpath -ldflags "-s -w -X github.com/treeverse/lakefs/pkg/version.Version=$version" -o "$out.tmp" ./cmd/lakefs
mv "$out.tmp" "$out"
rm -rf "$work"
echo "lakefs: built $out in $(( $(date +%s) - started ))s"
