#!/usr/bin/env bash
# One-command set-up of arena on a fresh machine (README, first command).
#
#   bash scripts/setup.sh            # Python packages + sandbox (Docker engine, bubblewrap, image)
#   ARENA_SKIP_SYSTEM=1 bash scripts/setup.sh   # Python packages only
#
# - torch: where no NVIDIA GPU is present, pin the CPU build (an unpinned torch pulls
#   several GB of CUDA packages). Override with ARENA_TORCH_SPEC="torch==X".
# - system packages (root only): docker.io, bubblewrap, debootstrap; starts dockerd when
#   no engine answers, then builds the arena sandbox image offline.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

if [ -z "${ARENA_TORCH_SPEC:-}" ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
    ARENA_TORCH_SPEC="torch"
  else
    ARENA_TORCH_SPEC="torch==2.13.0"   # the CPU wheel this machine kind carries
  fi
fi
log "installing $ARENA_TORCH_SPEC"
$PY -m pip install -q "$ARENA_TORCH_SPEC"
log "installing arena with the dev extra"
$PY -m pip install -q -e ".[dev]"
command -v pyenv >/dev/null 2>&1 && pyenv rehash 2>/dev/null || true   # expose the `arena` command

if [ "${ARENA_SKIP_SYSTEM:-0}" = "1" ]; then
  log "ARENA_SKIP_SYSTEM=1: skipping Docker, bubblewrap and the sandbox image"
  exit 0
fi

if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  need=()
  command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
  command -v bwrap >/dev/null 2>&1 || need+=(bubblewrap)
  command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
  if [ ${#need[@]} -gt 0 ]; then
    log "apt-get install ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
else
  log "not root or no apt-get: install docker, bubblewrap and debootstrap yourself"
fi

bash scripts/start_docker.sh || log "Docker engine unavailable: the process sandbox backend will be used"
if docker info >/dev/null 2>&1 && [ -f scripts/build_sandbox_image.sh ]; then
  bash scripts/build_sandbox_image.sh
fi
log "done"
