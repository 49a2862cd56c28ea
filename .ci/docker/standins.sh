#!/usr/bin/env bash
# Build the CI stand-ins for the official images (no registry is reachable from CI):
#   facepic-ci/debian:bookworm   debootstrap from the Debian mirror apt already uses
#   facepic-ci/python:3.11       for python:3.12-slim (BASE_IMAGE of the project's Dockerfiles)
#   facepic-ci/redis, facepic-ci/mongo, facepic-ci/seaweedfs   for the compose file's servers
# Host-specific things (mirror, CA certificates, pip index) are read here, at CI time, and only
# ever land in temporary build contexts.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if ! docker image inspect facepic-ci/debian:bookworm >/dev/null 2>&1; then
  mirror=$("$here/mirror.sh")
  echo "debootstrap bookworm from the mirror apt uses" >&2
  command -v debootstrap >/dev/null || apt-get install -y -q debootstrap >/dev/null
  debootstrap --variant=minbase --include=ca-certificates,python3,python3-venv,passwd,redis-server,wget \
    bookworm "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log"; exit 1; }
  tar -C "$work/rootfs" -c . | docker import - facepic-ci/debian:bookworm >/dev/null
  rm -rf "$work/rootfs"
fi

# The host's pip settings that matter inside a build: its index (http(s) only: a file:// index on
# the host's disk does not exist in a container) and its trust in the host's CA certificates.
ctx="$work/python"
mkdir -p "$ctx/ca"
cp /usr/local/share/ca-certificates/*.crt "$ctx/ca/" 2>/dev/null || true
pip_cmd=(python3 -m pip)
[ -n "${VIRTUAL_ENV:-}" ] && pip_cmd=("$VIRTUAL_ENV/bin/python" -m pip)
{
  echo "[global]"
  echo "cert = /etc/ssl/certs/ca-certificates.crt"
  "${pip_cmd[@]}" config list 2>/dev/null | python3 -c '
import sys
keep = {"index-url", "extra-index-url", "trusted-host", "timeout", "default-timeout", "retries"}
seen = {}
for line in sys.stdin:
    key, _, value = line.strip().partition("=")
    name = key.rsplit(".", 1)[-1]
    value = value.strip().strip("\x27\"")
    if name in keep and name not in seen:
        if "index-url" in name:
            value = " ".join(u for u in value.split() if u.startswith(("http://", "https://")))
        if value:
            seen[name] = value
for name, value in seen.items():
    print("timeout" if name == "default-timeout" else name, "=", value)
'
} > "$ctx/pip.conf"
docker build -q -t facepic-ci/python:3.11 -f "$here/python.Dockerfile" "$ctx" >/dev/null

for name in redis mongo seaweedfs; do
  docker build -q -t "facepic-ci/$name" -f "$here/$name.Dockerfile" "$here" >/dev/null
done
