#!/usr/bin/env bash
# Install Debian's Chromium for the dashboard's browser tests (tests/web/, Playwright with
# executable_path=/usr/bin/chromium: Playwright's own browser download cannot work here). Idempotent.
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
    echo "chromium.sh: chromium already installed"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "chromium.sh: no apt-get here: install Chromium yourself (the browser tests skip without it, and fail on CI)" >&2
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends chromium
echo "chromium.sh: installed $(chromium --version 2>/dev/null || echo chromium)"
