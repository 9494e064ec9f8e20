#!/usr/bin/env bash
# The content-check tests run a private spamd and clamd on loopback ports (tests/daemons.py);
# install Debian's spamd and clamav-daemon when they are missing. Debian starts the
# packaged services when it can; the tests never use them, and nothing here touches them.
# clamav-freshclam is not installed: there is no network, and the tests bring their own
# one-signature database.
set -euo pipefail
if ! command -v spamd >/dev/null 2>&1 || ! command -v clamd >/dev/null 2>&1 \
  || ! command -v sigtool >/dev/null 2>&1; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "no apt-get: the content-check tests will be skipped" >&2
    exit 0
  fi
  echo "installing spamd and clamav-daemon (Debian packages)" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    spamassassin spamd clamav clamav-daemon >/dev/null \
    || echo "could not install spamd and clamav-daemon: their tests will be skipped" >&2
fi
