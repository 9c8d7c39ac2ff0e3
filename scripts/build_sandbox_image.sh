#!/usr/bin/env bash
# Build the arena sandbox image offline. The builder ships inside the package
# (sandbox/build_image.sh, run by `arena sandbox build`); this wrapper keeps the old path.
exec bash "$(dirname "$0")/../sandbox/build_image.sh" "$@"
