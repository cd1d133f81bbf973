#!/usr/bin/env bash
# Print the path of a promtool binary, fetching it on a clean machine first.
#
# promtool comes from Debian's `prometheus` package. The package is never installed (that would
# start a Prometheus daemon): its .deb is downloaded with `apt-get download` (no root needed)
# and unpacked with `dpkg-deb -x` into a cache directory, then reused on every later run.
#   deploy/scripts/promtool.sh                  -> /root/.cache/tokensvc/promtool/usr/bin/promtool
#   "$(deploy/scripts/promtool.sh)" check rules deploy/alerts.yaml
# PROMTOOL (an existing binary) or PROMTOOL_CACHE (the cache directory) override the defaults.
set -euo pipefail

if [[ -n "${PROMTOOL:-}" ]]; then
    echo "$PROMTOOL"
    exit 0
fi
cache="${PROMTOOL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tokensvc/promtool}"
binary="$cache/usr/bin/promtool"
if [[ -x "$binary" ]]; then
    echo "$binary"
    exit 0
fi
command -v apt-get >/dev/null || { echo "promtool.sh: needs apt-get and dpkg-deb (Debian/Ubuntu)" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
deb=""
# A .deb already in the local apt cache saves the download.
for cached in /var/cache/apt/archives/prometheus_*.deb; do
    [[ -e "$cached" ]] && deb="$cached"
done
if [[ -z "$deb" ]]; then
    if ! (cd "$work" && apt-get download prometheus >&2); then
        # A clean machine may have no package lists yet.
        if [[ "$(id -u)" == 0 ]]; then
            apt-get update -qq >&2
            (cd "$work" && apt-get download prometheus >&2)
        else
            echo "promtool.sh: apt-get download prometheus failed; run 'sudo apt-get update'" >&2
            exit 1
        fi
    fi
    deb="$(ls "$work"/prometheus_*.deb)"
fi
mkdir -p "$cache"
dpkg-deb -x "$deb" "$work/root"
install -D -m 0755 "$work/root/usr/bin/promtool" "$binary"
echo "$binary"
