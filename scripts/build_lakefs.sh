#!/usr/bin/env bash
# Build the lakeFS server from its Go module at the release pinned in pyproject.toml.
# The release's module leaves out generated code (OpenAPI server/client stubs) and the
# built web UI, so we run the module's own code generators and build the UI from the
# module's webui/ sources with npm (lakeFS embeds webui/dist with go:embed).
# Result: .cache/bin/lakefs-<version>.
# Overrides: LAKEFS_VERSION (another release than the pin), LAKEFS_OUT (output path).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
version="${LAKEFS_VERSION:-$(python3 -c 'import tomllib,sys; print(tomllib.load(open(sys.argv[1],"rb"))["tool"]["mlv-spark"]["lakefs-version"])' "$root/pyproject.toml")}"
out="${LAKEFS_OUT:-$root/.cache/bin/lakefs-$version}"
if [ -x "$out" ]; then echo "lakefs: $out cached"; exit 0; fi
command -v go >/dev/null || { echo "error: Go is required to build lakeFS (install Go >= 1.22)" >&2; exit 1; }

# GOWORK=off: newer releases ship a go.work naming nested modules their zip leaves out.
export GOFLAGS=-mod=mod GOTOOLCHAIN=local GOWORK=off
# A private work dir per run, so two builds at once (e.g. make bootstrap and a test build) don't clash.
mkdir -p "$root/.cache" "$(dirname "$out")"
work="$(mktemp -d "$root/.cache/lakefs-src.XXXXXX")"
trap 'rm -rf "$work" "$out.tmp.$$"' EXIT
# The built UI is kept per version: rebuilding the binary then skips npm entirely.
ui_cache="$root/.cache/lakefs-ui/$version"
ui_log="$root/.cache/lakefs-ui/$version.log"
started=$SECONDS; timings=""
lap() { timings+="${timings:+, }$1 $(( SECONDS - t0 ))s"; }

t0=$SECONDS
echo "lakefs: downloading github.com/treeverse/lakefs@$version from the Go module proxy"
dir="$(cd "$work" && go mod download -json "github.com/treeverse/lakefs@$version" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
cp -r "$dir/." "$work/src"; chmod -R u+w "$work/src"; cd "$work/src"
# Later releases (seen in v1.80.0) moved the UI and the server's wiring into nested modules
# (github.com/treeverse/lakefs/webui, modules/*/factory) that the module proxy here won't serve.
if grep -q 'github.com/treeverse/lakefs/webui ' go.mod; then
  echo "error: lakeFS $version keeps its web UI and server wiring in nested Go modules (github.com/treeverse/lakefs/webui, modules/*/factory) outside this module's zip; build a release with webui/ inside the module (e.g. v1.33.0)" >&2
  exit 1
fi
lap download

t0=$SECONDS
echo "lakefs: generating API code"
go generate ./pkg/api/apigen ./pkg/auth ./pkg/authentication ./pkg/permissions
lap generate

t0=$SECONDS
if [ -f "$ui_cache/index.html" ]; then
  echo "lakefs: web UI cached in $ui_cache"
else
  command -v npm >/dev/null || { echo "error: npm (Node.js >= 18) is required to build the lakeFS web UI" >&2; exit 1; }
  [ -f webui/package-lock.json ] || { echo "error: lakeFS $version ships no webui/package-lock.json; cannot build its web UI" >&2; exit 1; }
  echo "lakefs: building the web UI with npm (a few minutes on a cold cache; log: $ui_log)"
  mkdir -p "$(dirname "$ui_cache")"
  # npm's download cache lives under .cache/ so rebuilds reuse the downloads; playwright is a
  # test-only dependency and must not try to download browsers. VERSION tags the UI's API calls.
  if ! (cd webui &&
        PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --cache "$root/.cache/npm" --prefer-offline --no-audit --no-fund &&
        VERSION="$version" npm run build) >"$ui_log" 2>&1 || [ ! -f webui/dist/index.html ]; then
    tail -n 30 "$ui_log" >&2
    echo "error: building the lakeFS web UI failed (node $(node --version 2>/dev/null || echo missing), npm $(npm --version); full log: $ui_log)" >&2
    exit 1
  fi
  # Publish atomically; if a parallel build got there first, keep its copy.
  rm -rf "$ui_cache.$$"; cp -r webui/dist "$ui_cache.$$"
  [ -f "$ui_cache/index.html" ] || rm -rf "$ui_cache"
  mv -T "$ui_cache.$$" "$ui_cache" 2>/dev/null || rm -rf "$ui_cache.$$"
  rm -rf webui/node_modules  # ~1200 packages: deleting them is slow, so count it here
fi
rm -rf webui/dist; cp -r "$ui_cache" webui/dist
lap "web UI"

t0=$SECONDS
echo "lakefs: compiling (a few minutes on a cold cache)"
go build -trimpath -ldflags "-s -w -X github.com/treeverse/lakefs/pkg/version.Version=$version" -o "$out.tmp.$$" ./cmd/lakefs
mv "$out.tmp.$$" "$out"
lap compile
echo "lakefs: built $out ($(du -m "$out" | cut -f1) MB) in $(( SECONDS - started ))s ($timings)"
