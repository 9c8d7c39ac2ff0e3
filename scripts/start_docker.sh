#!/usr/bin/env bash
# Start a Docker engine in the background when none answers (machines without systemd).
set -uo pipefail
if docker info >/dev/null 2>&1; then exit 0; fi
if ! command -v dockerd >/dev/null 2>&1; then
  echo "dockerd not found: apt-get install docker.io" >&2; exit 1
fi
if command -v systemctl >/dev/null 2>&1 && systemctl start docker >/dev/null 2>&1; then :; else
  nohup dockerd >/tmp/arena-dockerd.log 2>&1 &
fi
for _ in $(seq 1 60); do
  docker info >/dev/null 2>&1 && exit 0
  sleep 0.5
done
echo "dockerd did not come up; see /tmp/arena-dockerd.log" >&2
exit 1
