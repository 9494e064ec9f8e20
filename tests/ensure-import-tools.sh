#!/usr/bin/env bash
# The import tests read PST files with Debian's readpst (pst-utils) and import from a
# private Dovecot IMAP server on a loopback port (tests/imap_server.py); install them when
# they are missing. Debian may start the packaged Dovecot where it can; the tests never
# use it, and nothing here touches it.
set -euo pipefail
if ! command -v readpst >/dev/null 2>&1 || ! command -v dovecot >/dev/null 2>&1; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "no apt-get: the PST and IMAP import tests will be skipped" >&2
    exit 0
  fi
  echo "installing pst-utils and dovecot-imapd (Debian packages)" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    pst-utils dovecot-imapd >/dev/null \
    || echo "could not install pst-utils and dovecot-imapd: their tests will be skipped" >&2
fi
