#!/usr/bin/env bash
# Build the arena sandbox image offline: a minimal Debian root filesystem with Python 3
# (debootstrap from the Debian mirror that apt is already configured with), imported into
# Docker with `docker import`. No container registry is needed.
#
#   arena sandbox build [--rebuild]        # runs this script (it ships inside the package)
#   bash sandbox/build_image.sh            # the same from a source checkout
#   ARENA_SANDBOX_REBUILD=1 bash sandbox/build_image.sh   # rebuild even if present
#
# Environment:
#   ARENA_SANDBOX_IMAGE   image name:tag (default: the one arena.sandbox expects)
#   ARENA_DEBIAN_MIRROR   Debian mirror URL (default: read from /etc/apt/sources.list*)
#   ARENA_DEBIAN_SUITE    Debian suite (default: bookworm)
#
# Users with network access can instead run: arena sandbox build --dockerfile
# The image holds nothing but Python: the runner is sent to the container when it starts, so
# a new arena version does not need a new image unless the version below changes.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"  # the package dir (installed) or sandbox/ (checkout)

# colour only on a terminal: no escape codes into pipes and log files
if [ -t 1 ]; then B=$'\033[1m'; R=$'\033[1;31m'; N=$'\033[0m'; else B=; R=; N=; fi
log() { printf '%s[sandbox-image]%s %s\n' "$B" "$N" "$*"; }
die() { printf '%s[sandbox-image]%s %s\n' "$R" "$N" "$*" >&2; exit 1; }

# The default tag comes from the Python package, so the library and the script agree.
PY=${PYTHON:-python3}
DEFAULT_IMAGE=$(HERE="$HERE" $PY - <<'EOF' 2>/dev/null || true
import importlib.util, pathlib
import os
spec = importlib.util.spec_from_file_location("_v", pathlib.Path(os.environ["HERE"]) / "_version.py")
m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
print(m.DEFAULT_IMAGE)
EOF
)
IMAGE=${ARENA_SANDBOX_IMAGE:-${DEFAULT_IMAGE:-arena-sandbox:1}}
SUITE=${ARENA_DEBIAN_SUITE:-bookworm}

command -v docker >/dev/null 2>&1 || die "docker client not found: apt-get install docker.io"
docker info >/dev/null 2>&1 || die "no Docker engine answers: start it (systemctl start docker, or dockerd &)"

if [ "${ARENA_SANDBOX_REBUILD:-0}" != "1" ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
  log "$IMAGE already present (ARENA_SANDBOX_REBUILD=1 to rebuild)"
  exit 0
fi

command -v debootstrap >/dev/null 2>&1 || die "debootstrap not found: apt-get install debootstrap"
[ "$(id -u)" = "0" ] || die "debootstrap needs root: run as root, or use 'arena sandbox build --dockerfile' where a registry is reachable"

# The Debian mirror: whatever apt on this machine is configured with (deb822 .sources files
# or one-line sources.list entries), skipping security and updates suites.
mirror_from_apt() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk '
      /^[[:space:]]*$/ { if (uri != "" && suites ~ /(^| )'"$SUITE"'( |$)/) { print uri; exit } uri=""; suites=""; next }
      /^URIs:/ { uri=$2 }
      /^Suites:/ { $1=""; suites=$0 " " }
      END { if (uri != "" && suites ~ /(^| )'"$SUITE"'( |$)/) print uri }
    ' "$f" | head -n1
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i ~ /:\/\//) { if ($(i+1) == "'"$SUITE"'") print $i; break } }' "$f"
  done
}
MIRROR=${ARENA_DEBIAN_MIRROR:-$(mirror_from_apt | head -n1)}
[ -n "$MIRROR" ] || die "no Debian $SUITE mirror in /etc/apt/sources.list*: set ARENA_DEBIAN_MIRROR=URL"

WORK=$(mktemp -d /tmp/arena-sandbox-rootfs.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
ROOTFS="$WORK/rootfs"

log "debootstrap $SUITE (minbase + python3) into $ROOTFS"
# python3 (not only python3-minimal): the runner and typical programs need json, resource,
# dataclasses, fractions, decimal, which live in libpython3.11-stdlib.
debootstrap --variant=minbase --include=python3 "$SUITE" "$ROOTFS" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
  || { tail -n 20 "$WORK/debootstrap.log" >&2; die "debootstrap failed (log above)"; }

# Trim what a sandbox never needs; add the unprivileged user the containers run as.
rm -rf "$ROOTFS"/var/cache/apt/* "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/usr/share/doc/* \
       "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/locale/* "$ROOTFS"/var/log/*
if ! grep -q '^sandbox:' "$ROOTFS/etc/passwd"; then
  echo 'sandbox:x:10001:10001:arena sandbox:/work:/usr/sbin/nologin' >>"$ROOTFS/etc/passwd"
  echo 'sandbox:x:10001:' >>"$ROOTFS/etc/group"
fi
mkdir -p "$ROOTFS/work"
chown 10001:10001 "$ROOTFS/work"
chmod 0700 "$ROOTFS/work"

log "docker import -> $IMAGE"
tar -C "$ROOTFS" -c . | docker import \
  -c 'USER 10001:10001' -c 'WORKDIR /work' -c 'ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1' \
  -c 'CMD ["python3"]' - "$IMAGE" >/dev/null
docker run --rm --network none "$IMAGE" python3 -c 'import json, resource, os; print("python ok, uid", os.getuid())'
log "built $IMAGE"
