"""The dashboard in real headless chromium: login required, live alerts appear, detail, profile, models."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from misuse.service.app import create_app
from misuse.service.config import load_config
from misuse.service.loadgen import scan_events, steady_events
from tests.service.cdp import Browser
from tests.service.conftest import N_ENTITIES, Project, free_port, need_binary, wait_port

pytestmark = pytest.mark.service


@pytest.fixture
def http_service(project: Project) -> Iterator[str]:
    """The app under uvicorn in a thread (HTTP ingest only), on a free loopback port."""
    port = free_port()
    cfg = load_config({"project": project.root, "port": port, "mqtt_enabled": False}, env={})
    server = uvicorn.Server(uvicorn.Config(create_app(cfg), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_port(port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def browser() -> Iterator[Browser]:
    """Headless Debian chromium."""
    b = Browser(need_binary("chromium"))
    try:
        yield b
    finally:
        b.close()


def test_dashboard_login_live_alerts_detail_profile_models(
    http_service: str, browser: Browser, project: Project, tmp_path: Path
) -> None:
    # prepare: the page, a bad and a good token
    browser.open(http_service + "/")
    browser.wait("document.readyState === 'complete' && !!document.getElementById('login-form')")

    # execute + assert: the data needs a login; a wrong token is refused
    assert browser.eval("document.getElementById('view-login').hidden") is False
    assert browser.eval("document.getElementById('view-alerts').hidden") is True
    assert browser.eval("fetch('/api/alerts').then(r => r.status)") == 401
    browser.eval(
        "document.getElementById('token').value = 'msu_0_wrong';"
        "document.getElementById('login-form').requestSubmit(); true"
    )
    browser.wait("document.getElementById('login-error').textContent.includes('refused')")
    token = json.dumps(project.tokens["viewer"])
    browser.eval(
        f"document.getElementById('token').value = {token};document.getElementById('login-form').requestSubmit(); true"
    )
    browser.wait("document.getElementById('live-state').textContent === 'live'")

    # execute: traffic with a scan arrives while the page is open
    now = time.time() - 6
    events = list(steady_events(N_ENTITIES, 400.0, now, 4.0)) + scan_events("dev-007", now + 1.2, n=300, span=0.3)
    events.sort(key=lambda e: e["ts"])
    headers = {"Authorization": f"Bearer {project.tokens['analyst']}"}
    for i in range(0, len(events), 500):
        r = httpx.post(http_service + "/api/events", json={"events": events[i : i + 500]}, headers=headers, timeout=30)
        assert r.status_code == 200, r.text

    # assert: the alert appeared live in the feed (pushed, no reload)
    alert_id = browser.wait(
        "[...document.querySelectorAll('#alert-rows tr')].filter(r => r.textContent.includes('dev-007'))"
        ".map(r => r.dataset.alert)[0]"
    )
    browser.eval(f"location.hash = '#/alert/{alert_id}'; true")
    bars = browser.wait("document.querySelectorAll('#alert-chart rect.actual').length")
    assert bars >= 1
    assert "dev-007" in browser.eval("document.getElementById('alert-summary').textContent")

    browser.eval("location.hash = '#/entity/dev-007'; true")
    cells = browser.wait("[...document.querySelectorAll('#heatmap .cell')].filter(c => c.dataset.count > 0).length")
    assert cells >= 1
    assert browser.wait("document.querySelectorAll('#bars-actions .bar').length") >= 1
    assert browser.wait("document.querySelectorAll('#entity-alerts a').length") >= 1

    browser.eval("location.hash = '#/models'; true")
    assert "scoring the stream" in browser.wait("document.getElementById('model-rows').textContent")
