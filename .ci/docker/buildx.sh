#!/usr/bin/env bash
# Compose needs buildx >= 0.17 to build; Debian 12 has none. Unpack a newer Debian docker-buildx
# (sid's; it needs only libc6 >= 2.34) into DEST without installing it: apt runs with its own
# state folder, so the machine's sources, lists and packages stay untouched.
# Usage: buildx.sh DEST   -> DEST/docker-buildx, a CLI plugin
set -euo pipefail
dest=$1
here=$(cd "$(dirname "$0")" && pwd)
mirror=$("$here/mirror.sh")
state=$(mktemp -d)
chmod 777 "$state"  # apt downloads as _apt
trap 'rm -rf "$state"' EXIT
mkdir -p "$state/lists/partial" "$state/archives/partial" "$state/parts" "$state/prefs"
echo "deb $mirror sid main" > "$state/sources.list"
opts=(-o "Dir::Etc::SourceList=$state/sources.list" -o "Dir::Etc::SourceParts=$state/parts"
      -o "Dir::Etc::Preferences=$state/prefs/none" -o "Dir::Etc::PreferencesParts=$state/prefs"
      -o "Dir::State::Lists=$state/lists" -o "Dir::Cache=$state" -o "Dir::Cache::archives=$state/archives"
      -o "APT::Get::List-Cleanup=0" -q)
apt-get "${opts[@]}" update >/dev/null
(cd "$state" && apt-get "${opts[@]}" download docker-buildx >/dev/null)
mkdir -p "$state/x" "$dest"
dpkg -x "$state"/docker-buildx_*.deb "$state/x"
install -m 0755 "$state/x/usr/libexec/docker/cli-plugins/docker-buildx" "$dest/docker-buildx"
