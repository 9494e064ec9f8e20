# The two set-up commands: `make run` starts the whole service, `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-mta lint bench clean translations

# Four tests at a time on any machine: most tests wait on real servers, so four keep
# two cores busy (on two cores, 521 s against three's 540 s). Each test goes to the next
# free process, in file order, so no process is left at the end with a long file the
# others could have shared; the tests of a module that share a module fixture (a crash
# run, a two-machine load, a browser) form an xdist_group (tests/conftest.py), and run
# in one process, which sets it up once.
# `make test PYTEST_PARALLEL=` runs the tests one at a time.
PYTEST_PARALLEL ?= -n 4 --dist loadgroup

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/arsip db upgrade
	exec $(BIN)/arsip serve

# Installs Debian's chromium for the browser tests (and axe-core, pinned, with npm for the
# accessibility checks) and (where apt-get can) Debian's postfix
# and swaks for the MTA tests, spamd and clamav-daemon for the content checks, and
# pst-utils and dovecot-imapd for the PST and IMAP import tests, installs and starts a
# private PostgreSQL server on loopback (with Debian's postgresql-15-rum, and a streaming
# replica of it on another loopback port) for the database tests, runs the whole suite
# against SQLite and PostgreSQL, and stops the servers again. The suite starts a few
# hundred `arsip serve` and `arsip` processes: the project's bytecode is compiled first,
# so that none of them compiles some 250 modules again where PYTHONDONTWRITEBYTECODE is
# set (a fifth of a service's start-up).
test: $(STAMP)
	tests/ensure-chromium.sh
	tests/reliability/ensure-postfix.sh
	tests/ensure-contentcheck.sh
	tests/ensure-import-tools.sh
	tests/ensure-axe.sh
	$(BIN)/python -m compileall -q -j 0 archiver lists web migrations tests
	tests/with-postgres.sh $(BIN)/python -m pytest $(PYTEST_PARALLEL) $(PYTEST_ARGS)

# Arsip behind two private Postfix instances on loopback ports, configured as the README's
# Postfix section says (the machine's own Postfix and port 25 are left alone).
test-mta: $(STAMP)
	tests/reliability/ensure-postfix.sh
	$(BIN)/python -m pytest tests/reliability/test_postfix.py $(PYTEST_ARGS)

# The catalogues of the pages (web), of list mail and the list engine's answers (lists) and
# of the core's errors and notes (archiver): new strings extracted into
# each package's messages.pot, merged into every language's messages.po (translate the
# new entries there), and compiled. The compiled .mo files are committed, as Django does,
# so that an install needs no build step; a test checks they match the .po files.
# lazy_gettext marks the module-level strings of the web, and with lazy_ngettext the texts
# the core and the list engine say later in the reader's language (archiver/languages.py);
# "Translators:" comments reach the .po.
EXTRACT_ARGS := --no-location --sort-output -k lazy_gettext -k lazy_ngettext:1,2 \
  --add-comments=Translators:
translations: $(STAMP)
	for package in archiver lists web; do \
	  $(BIN)/pybabel -q extract -F babel.cfg $(EXTRACT_ARGS) --project=Arsip \
	    -o $$package/translations/messages.pot $$package && \
	  $(BIN)/pybabel -q update --init-missing -l id --no-fuzzy-matching --ignore-obsolete \
	    -i $$package/translations/messages.pot -d $$package/translations && \
	  $(BIN)/pybabel compile --statistics -d $$package/translations || exit 1; \
	done

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python tests/bench/ingest.py
	$(BIN)/python tests/bench/fanout.py
	$(BIN)/python tests/bench/search.py --keep var/bench-archive
	$(BIN)/python tests/bench/web.py --data-dir var/bench-archive/data

clean:
	rm -rf $(VENV) build *.egg-info
