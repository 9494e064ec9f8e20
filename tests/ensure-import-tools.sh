#!/usr/bin/env bash
# The import tests read PST files with Debian's readpst (pst-utils) and import from a
# private Dovecot IMAP server on a loopback port (tests/imap_server.py); install them when
# they are missing. Debian may start the packaged Dovecot where it can; the tests never
# use it, and nothing here touches it. The timestamp and production tests run a
# Time-Stamp Authority with the openssl command (tests/tsa.py), installed here too.
set -euo pipefail
if ! command -v readpst >/dev/null 2>&1 || ! command -v dovecot >/dev/null 2>&1 \
  || ! command -v openssl >/dev/null 2>&1; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "no apt-get: the PST, IMAP and timestamp tests will be skipped" >&2
    exit 0
  fi
  echo "installing pst-utils, dovecot-imapd and openssl (Debian packages)" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    pst-utils dovecot-imapd openssl >/dev/null \
    || echo "could not install pst-utils, dovecot-imapd and openssl: their tests will be skipped" >&2
fi
