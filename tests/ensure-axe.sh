#!/usr/bin/env bash
# The accessibility tests inject axe-core into each page; install that one pinned version
# with the machine's npm into tests/.axe/ (git-ignored) when it is not there yet.
set -euo pipefail
VERSION=4.14.1
HERE="$(cd "$(dirname "$0")" && pwd)"
TARGET="$HERE/.axe"
if [ -f "$TARGET/node_modules/axe-core/axe.min.js" ] &&
  grep -q "\"version\": \"$VERSION\"" "$TARGET/node_modules/axe-core/package.json"; then
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "installing npm (Debian package npm)" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null
fi
echo "installing axe-core $VERSION into tests/.axe" >&2
mkdir -p "$TARGET"
npm install --silent --no-audit --no-fund --no-save --prefix "$TARGET" "axe-core@$VERSION" >&2
