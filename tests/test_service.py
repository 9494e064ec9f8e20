"""`arsip serve` as an operator meets it: the status page, a clean stop, a busy port."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.request

from tests.support import ARSIP, ROOT, RunningService


def test_the_web_page_says_the_service_is_up(make_service) -> None:
    service: RunningService = make_service()
    base = f"http://127.0.0.1:{service.settings.web_port}"
    with urllib.request.urlopen(f"{base}/status", timeout=10) as response:
        page = response.read().decode()
    assert "Arsip is up" in page
    with urllib.request.urlopen(f"{base}/healthz", timeout=10) as response:
        health = json.loads(response.read())
    assert health["status"] == "ok" and health["messages"] == 0


def test_sigterm_stops_the_service_and_its_worker(make_service) -> None:
    service: RunningService = make_service()
    assert service.stop(signal.SIGTERM) == 0
    assert "stopping" in service.log()


def test_a_busy_port_fails_start_up_with_one_line(make_service) -> None:
    first: RunningService = make_service()
    second = subprocess.run(
        [ARSIP, "serve"],
        env={**os.environ, **first.env, "ARSIP_DATA_DIR": str(first.settings.data_dir) + "-2"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode == 1
    assert "Error: cannot start:" in second.stderr
    assert "address already in use" in second.stderr.lower()
    assert "Traceback" not in second.stderr
