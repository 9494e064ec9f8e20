#!/usr/bin/env bash
# The browser tests drive Debian's chromium (Playwright's own browser downloads are not
# used); install it when it is missing.
set -euo pipefail
if ! command -v chromium >/dev/null 2>&1; then
  echo "installing chromium (Debian package chromium)" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
