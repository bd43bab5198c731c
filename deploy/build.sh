#!/bin/sh
# build.sh OUTPUT — build the tohost binary the way the container image has
# it: static (no cgo: it runs on an image without a C library), with no
# build machine's paths in it (-trimpath), stripped. deploy/Dockerfile runs
# this script and deploy's test runs it too, so the image's build cannot
# drift from the one the tests check. TOHOST_VERSION, when set, is what
# `tohost version` reports.
set -eu
out=${1:?usage: deploy/build.sh OUTPUT}
cd "$(dirname "$0")/.."
ldflags="-s -w"
if [ -n "${TOHOST_VERSION:-}" ]; then
	ldflags="$ldflags -X main.version=$TOHOST_VERSION"
fi
CGO_ENABLED=0 exec go build -trimpath -ldflags "$ldflags" -o "$out" ./cmd/tohost
