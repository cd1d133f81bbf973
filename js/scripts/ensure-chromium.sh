#!/usr/bin/env bash
# Make sure Debian's Chromium is at /usr/bin/chromium for js/test/browser.test.mjs.
# Installs it with apt-get when missing (needs root). Never fails the caller: when it cannot
# install, it prints a loud warning and exits 0, and the browser test then skips loudly too.
set -u

CHROMIUM=/usr/bin/chromium

warn() {
  local line
  line=$(printf '!%.0s' {1..78})
  printf '\n%s\n!!! ensure-chromium: %s\n!!! The browser tests (js/test/browser.test.mjs) will be SKIPPED.\n%s\n\n' \
    "$line" "$1" "$line" >&2
}

if [ -x "$CHROMIUM" ]; then
  echo "ensure-chromium: $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM") already installed"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  warn "$CHROMIUM is missing and apt-get is not available"
  exit 0
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
  else
    warn "$CHROMIUM is missing and installing it needs root (no passwordless sudo)"
    exit 0
  fi
fi

echo "ensure-chromium: installing Debian's chromium package"
export DEBIAN_FRONTEND=noninteractive
if ! timeout 600 "${SUDO[@]}" apt-get update -q >/dev/null; then
  warn "apt-get update failed"
  exit 0
fi
if ! timeout 900 "${SUDO[@]}" apt-get install -y -q --no-install-recommends chromium >/dev/null; then
  warn "apt-get install chromium failed"
  exit 0
fi
if [ ! -x "$CHROMIUM" ]; then
  warn "the chromium package installed, but $CHROMIUM is not there"
  exit 0
fi
echo "ensure-chromium: $("$CHROMIUM" --version 2>/dev/null) installed"
