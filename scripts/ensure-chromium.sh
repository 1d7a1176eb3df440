#!/usr/bin/env sh
# Install Debian's headless-capable `chromium` when it is missing, so the report test can open
# report.html in a real browser. Idempotent: does nothing when chromium is already on PATH.
# Needs root (or sudo) and an apt source; without them it explains and exits 0, and the
# browser test then skips with the reason.
set -eu

if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-chromium: apt-get not found; install chromium by hand to run the HTML test" >&2
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "ensure-chromium: not root and no passwordless sudo; the HTML test will skip" >&2
        exit 0
    fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null \
    || echo "ensure-chromium: apt-get install chromium failed; the HTML test will skip" >&2
