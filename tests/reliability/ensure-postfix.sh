#!/usr/bin/env bash
# The MTA tests run two private Postfix instances on loopback ports and send with swaks;
# install Debian's postfix and swaks when they are missing. The package is told not to
# configure the machine's mail system, and nothing here starts or touches the system's
# own Postfix (the tests run theirs with their own configuration directories).
set -euo pipefail
if ! command -v postfix >/dev/null 2>&1 || ! command -v swaks >/dev/null 2>&1; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "no apt-get: the MTA tests will be skipped" >&2
    exit 0
  fi
  echo "installing postfix and swaks (Debian packages)" >&2
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postfix swaks >/dev/null \
    || echo "could not install postfix and swaks: the MTA tests will be skipped" >&2
fi
