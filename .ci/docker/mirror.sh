#!/usr/bin/env bash
# Print the Debian mirror apt already uses (the first http(s) URI serving the release's main suite),
# so that no host is ever written into the repository.
set -euo pipefail
release=${1:-bookworm}
{
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    # deb822: one stanza per blank-line-separated block; keep URIs of stanzas whose Suites hold $release.
    awk -v rel="$release" 'BEGIN{RS=""; FS="\n"} {u=""; s=0; en=1
      for (i=1;i<=NF;i++) { if ($i ~ /^URIs:/) { sub(/^URIs:[ \t]*/,"",$i); u=$i }
        if ($i ~ /^Suites:/) { n=split($i,a,/[ \t]+/); for (j=2;j<=n;j++) if (a[j]==rel) s=1 }
        if ($i ~ /^Enabled:[ \t]*no/) en=0 }
      if (s && en && u!="") { split(u,b,/[ \t]+/); print b[1] } }' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk -v rel="$release" '$1=="deb" { i=2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ } if ($(i+1)==rel) print $i }' "$f"
  done
} | grep -E '^https?://' | head -n 1 | grep .
