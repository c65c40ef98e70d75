#!/usr/bin/env bash
# Build SeaweedFS (Apache-2.0), the S3-compatible server of the local-s3 profile, from its Go
# module at the version pinned in pyproject.toml ([tool.mlv-spark] seaweedfs-version).
# Result: .cache/bin/weed-<version>. Only `make seaweedfs` / `make test-s3` need it.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
version="$(python3 -c 'import tomllib,sys; print(tomllib.load(open(sys.argv[1],"rb"))["tool"]["mlv-spark"]["seaweedfs-version"])' "$root/pyproject.toml")"
out="$root/.cache/bin/seaweedfs-$version"
if [ -x "$out" ]; then echo "seaweedfs: $out cached"; exit 0; fi
command -v go >/dev/null || { echo "error: Go is required to build SeaweedFS (install Go >= 1.26)" >&2; exit 1; }
export GOFLAGS=-mod=mod GOTOOLCHAIN=local GOWORK=off
mkdir -p "$root/.cache" "$(dirname "$out")"
work="$(mktemp -d "$root/.cache/seaweedfs-src.XXXXXX")"
trap 'rm -rf "$work" "$out.tmp.$$"' EXIT
started=$SECONDS
echo "seaweedfs: downloading github.com/seaweedfs/seaweedfs@$version from the Go module proxy"
dir="$(cd "$work" && go mod download -json "github.com/seaweedfs/seaweedfs@$version" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
cp -r "$dir/." "$work/src"; chmod -R u+w "$work/src"; cd "$work/src"
echo "seaweedfs: compiling weed (several minutes on a cold cache)"
go build -trimpath -ldflags "-s -w" -o "$out.tmp.$$" ./weed
mv "$out.tmp.$$" "$out"
echo "seaweedfs: built $out ($(du -m "$out" | cut -f1) MB) in $(( SECONDS - started ))s"
