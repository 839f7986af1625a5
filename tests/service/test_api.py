"""The REST API without a broker: one error shape everywhere, roles, limits, OpenAPI, the routes' work."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient  # starlette warns about httpx; the client still works

from misuse.service.app import create_app
from misuse.service.config import load_config
from misuse.service.loadgen import scan_events, steady_events
from tests.service.conftest import N_ENTITIES, Project

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore:All-NaN:RuntimeWarning")


@pytest.fixture
def api(project: Project) -> Iterator[TestClient]:
    cfg = load_config({"project": project.root, "mqtt_enabled": False, "max_body_bytes": 200_000}, env={})
    with TestClient(create_app(cfg, start_workers=False)) as client:
        yield client


def auth(project: Project, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {project.tokens[role]}"}


def assert_error_shape(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"}
    err = body["error"]
    assert set(err) == {"status", "code", "message", "details"}
    assert err["status"] == status and err["code"] and err["message"] and isinstance(err["details"], list)
    return dict(err)


def ingest_scan(api: TestClient, project: Project) -> list[dict[str, Any]]:
    now = time.time() - 10
    events = list(steady_events(N_ENTITIES, 400.0, now, 4.0)) + scan_events("dev-005", now + 1.2, n=300, span=0.3)
    events.sort(key=lambda e: e["ts"])
    for i in range(0, len(events), 400):
        r = api.post("/api/events", json={"events": events[i : i + 400]}, headers=auth(project, "analyst"))
        assert r.status_code == 200, r.text
    return events


def chunks(n: int, size: int = 10_000) -> Iterator[bytes]:
    """A request body the client sends chunked (no Content-Length)."""
    for _ in range(n):
        yield b"x" * size


def test_every_failure_has_the_one_error_shape(api: TestClient, project: Project) -> None:
    # prepare
    viewer, admin = auth(project, "viewer"), auth(project, "admin")
    as_json = {**admin, "Content-Type": "application/json"}
    cases = [
        (api.get("/openapi.json"), 401),
        (api.get("/docs"), 401),
        (api.get("/api/alerts"), 401),
        (api.get("/metrics", headers={"Authorization": "Bearer msu_x_forged"}), 401),
        (api.post("/api/events", json={"events": [{"ts": 1, "entity": "a"}]}, headers=viewer), 403),
        (api.post("/api/models/train", json={"name": "m"}, headers=auth(project, "analyst")), 403),
        (api.get("/api/alerts/nope", headers=viewer), 404),
        (api.get("/api/entities/nobody/profile", headers=viewer), 404),
        (api.post("/api/alerts/nope/ack", headers=auth(project, "analyst")), 404),
        (api.post("/api/models/nope/activate", headers=admin), 404),
        (api.delete("/api/tokens/nope", headers=admin), 404),
        (api.get("/no/such/route"), 404),
        (api.delete("/api/alerts", headers=viewer), 405),
        (api.post("/api/events", json={"events": []}, headers=admin), 422),
        (api.post("/api/events", content=b"{broken", headers={**admin, "Content-Type": "application/json"}), 422),
        (api.post("/api/alerts/x/feedback", json={"verdict": "maybe"}, headers=admin), 422),
        (api.get("/api/alerts?limit=0", headers=viewer), 422),
        (api.post("/api/tokens", json={"name": "x", "role": "root"}, headers=admin), 422),
        (api.post("/api/models/train", json={"name": "m", "dataset": "nope"}, headers=admin), 404),
        (api.post("/api/models/train", json={"name": "m"}, headers=admin), 409),  # nothing received yet
        (api.post("/api/events", content=b"x" * 300_000, headers=as_json), 413),
        (api.post("/api/events", content=chunks(30), headers=as_json), 413),
    ]
    spec = api.get("/openapi.json", headers=viewer).json()
    # execute + assert: each in the one shape, and documented in the schema for its route
    for resp, status in cases:
        err = assert_error_shape(resp, status)
        assert str(project.root) not in err["message"], f"{status} names a server path: {err['message']}"
        op = operation(spec, resp.request.method, resp.request.url.path)
        where = f"{resp.request.method} {resp.request.url.path}"
        assert op is None or str(status) in op["responses"], f"{where}: {status} is not in the schema"
    assert cases[0][0].headers["WWW-Authenticate"] == "Bearer"
    assert [assert_error_shape(r, s)["code"] for r, s in cases if s == 409] == ["no_data"]
    assert cases[-1][0].request.headers.get("transfer-encoding") == "chunked"  # streamed, nothing declared


def operation(spec: dict[str, Any], method: str, path: str) -> dict[str, Any] | None:
    """The schema's operation serving a request path (a literal path before a templated one), if any."""
    ops = spec["paths"]
    templates = sorted(ops, key=lambda t: "{" in t)
    for t in templates:
        if method.lower() in ops[t] and re.fullmatch(re.sub(r"\{[^/]+\}", "[^/]+", t), path):
            return dict(ops[t][method.lower()])
    return None


# the errors each operation answers besides 500 (every route may fail inside): 401 wherever a token is needed,
# 403 where the role needed is above viewer, 413 where there is a body, 422 where a parameter or body can be invalid
DOCUMENTED_ERRORS = {
    ("post", "/api/events"): {401, 403, 413, 422},
    ("get", "/api/dead-letters"): {401, 422},
    ("get", "/api/stream/stats"): {401},
    ("get", "/api/alerts"): {401, 422},
    ("get", "/api/alerts/stream"): {401},
    ("get", "/api/alerts/{alert_id}"): {401, 404},
    ("post", "/api/alerts/{alert_id}/ack"): {401, 403, 404},
    ("post", "/api/alerts/{alert_id}/feedback"): {401, 403, 404, 413, 422},
    ("get", "/api/entities"): {401, 422},
    ("get", "/api/entities/{entity}/profile"): {401, 404, 422},
    ("get", "/api/models"): {401},
    ("post", "/api/models/train"): {401, 403, 404, 409, 413, 422},
    ("post", "/api/models/{name}/activate"): {401, 403, 404},
    ("get", "/api/health"): set(),
    ("get", "/metrics"): {401},
    ("get", "/api/whoami"): {401},
    ("get", "/api/tokens"): {401, 403},
    ("post", "/api/tokens"): {401, 403, 413, 422},
    ("delete", "/api/tokens/{token_id}"): {401, 403, 404},
}


def test_health_is_open_and_reveals_no_data(api: TestClient) -> None:
    resp = api.get("/api/health")
    assert resp.status_code == 200
    assert resp.json()["status"] == "ok" and resp.json()["model"] == "steady" and resp.json()["mqtt"] == "disabled"


def test_openapi_documents_every_route_with_security_and_errors(api: TestClient, project: Project) -> None:
    # execute: the schema and its Swagger UI need a token too (a viewer's is enough)
    spec = api.get("/openapi.json", headers=auth(project, "viewer")).json()
    ui = api.get("/docs", headers=auth(project, "viewer"))
    login_page = api.get("/")
    # assert
    assert ui.status_code == 200 and "/openapi.json" in ui.text
    assert login_page.status_code == 200 and "token" in login_page.text.lower()
    assert api.get("/redoc", headers=auth(project, "viewer")).status_code == 404
    # every operation but health needs the bearer token; each documents the errors it answers, in the one shape
    assert "HTTPBearer" in spec["components"]["securitySchemes"]
    ops = {(m, p): op for p, item in spec["paths"].items() for m, op in item.items()}
    assert set(ops) == set(DOCUMENTED_ERRORS)
    for (method, path), op in ops.items():
        assert op.get("summary"), f"{method} {path} has no summary"
        if path == "/api/health":
            assert "security" not in op
        else:
            assert op.get("security") == [{"HTTPBearer": []}], f"{method} {path} is not protected"
        errors = {int(s): r for s, r in op["responses"].items() if s[0] in "45"}
        assert set(errors) == DOCUMENTED_ERRORS[method, path] | {500}, f"{method} {path}: {sorted(errors)}"
        for status, doc in errors.items():
            assert doc["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}
            assert doc["description"].startswith("`"), f"{method} {path} {status}: no error code in {doc}"
    assert ops["post", "/api/models/train"]["responses"]["409"]["description"].startswith("`no_data`")
    assert "HTTPValidationError" not in json.dumps(spec)


def test_ingest_alerts_ack_feedback_entities_profile_and_dead_letters(api: TestClient, project: Project) -> None:
    # prepare
    events = ingest_scan(api, project)
    bad = api.post(
        "/api/events",
        json={"events": [{"entity": "x"}, {"ts": 1.0, "entity": "y", "num": {"bytes": "many"}}, events[0]]},
        headers=auth(project, "analyst"),
    ).json()
    viewer, analyst = auth(project, "viewer"), auth(project, "analyst")
    # execute
    alerts = api.get("/api/alerts?entity=dev-005", headers=viewer).json()["alerts"]
    top = max(alerts, key=lambda a: a["score"])
    ack = api.post(f"/api/alerts/{top['alert_id']}/ack", headers=analyst)
    fb = api.post(f"/api/alerts/{top['alert_id']}/feedback", json={"verdict": "true_positive"}, headers=analyst)
    detail = api.get(f"/api/alerts/{top['alert_id']}", headers=viewer).json()
    entities = api.get("/api/entities", headers=viewer).json()
    prof = api.get("/api/entities/dev-005/profile", headers=viewer).json()
    dead = api.get("/api/dead-letters", headers=viewer).json()
    acked = api.get("/api/alerts?status=acknowledged", headers=viewer).json()
    # assert
    assert bad["accepted"] == 0 and bad["duplicates"] == 1 and bad["dead_letters"] == 2
    assert ack.status_code == 200 and fb.status_code == 200
    assert detail["status"] == "acknowledged" and detail["feedback"][0]["verdict"] == "true_positive"
    assert detail["feedback"][0]["analyst"] == "analyst-1"
    assert detail["evidence_events"] and detail["contributions"]
    assert [a["alert_id"] for a in acked["alerts"]] == [top["alert_id"]]
    assert {e["entity"] for e in entities} == {f"dev-{i:03d}" for i in range(N_ENTITIES)}
    assert sum(map(sum, prof["activity"])) == prof["events"] == sum(e["entity"] == "dev-005" for e in events)
    assert prof["actions"][0] == {"name": "tcp", "count": 300} and prof["baseline"]
    assert len(dead) == 2 and any("ts" in d["reason"] for d in dead) and any("bytes" in d["reason"] for d in dead)


def test_models_train_activate_and_token_admin(api: TestClient, project: Project) -> None:
    # prepare
    ingest_scan(api, project)
    admin = auth(project, "admin")
    # execute
    trained = api.post(
        "/api/models/train", json={"name": "from-stream", "window": 0.5, "activate": False}, headers=admin
    )
    before = {m["name"]: m for m in api.get("/api/models", headers=admin).json()}
    act = api.post("/api/models/from-stream/activate", headers=admin)
    after = {m["name"]: m for m in api.get("/api/models", headers=admin).json()}
    created = api.post("/api/tokens", json={"name": "ops", "role": "viewer"}, headers=admin).json()
    listed = api.get("/api/tokens", headers=admin).json()
    who = api.get("/api/whoami", headers={"Authorization": f"Bearer {created['token']}"}).json()
    revoked = api.delete(f"/api/tokens/{created['token_id']}", headers=admin)
    after_revoke = api.get("/api/whoami", headers={"Authorization": f"Bearer {created['token']}"})
    # assert
    assert trained.status_code == 200, trained.text
    assert before["steady"]["loaded"] and not before["from-stream"]["active"]
    assert act.status_code == 200 and after["from-stream"]["loaded"] and after["from-stream"]["active"]
    assert not after["steady"]["active"]
    assert who == {"name": "ops", "role": "viewer"}
    assert all("token" not in t or t["token"] is None for t in listed)
    assert revoked.status_code == 200 and after_revoke.status_code == 401
    stored = json.loads((project.root / "tokens.json").read_text())
    assert created["token"] not in json.dumps(stored)


def test_metrics_are_prometheus_text(api: TestClient, project: Project) -> None:
    ingest_scan(api, project)
    text = api.get("/metrics", headers=auth(project, "viewer")).text
    assert "# TYPE misuse_events_stored_total counter" in text
    stored = next(line for line in text.splitlines() if line.startswith("misuse_events_stored_total "))
    assert int(stored.split()[1]) > 0
    assert 'misuse_event_lag_seconds_bucket{le="+Inf"}' in text


def test_events_with_times_out_of_range_are_dead_letters_and_the_good_ones_kept(
    api: TestClient, project: Project
) -> None:
    # prepare: one good event among times the event model cannot hold (numbers and ISO-8601)
    now = time.time()
    batch = [
        {"ts": now, "entity": "dev-001"},
        {"ts": 1e300, "entity": "dev-001"},
        {"ts": -1e12, "entity": "zz"},
        {"ts": "9999-12-31T00:00:00Z", "entity": "dev-002"},
    ]
    # execute
    resp = api.post("/api/events", json={"events": batch}, headers=auth(project, "analyst"))
    viewer = auth(project, "viewer")
    stats = api.get("/api/stream/stats", headers=viewer).json()
    entities = api.get("/api/entities", headers=viewer)
    dead = api.get("/api/dead-letters", headers=viewer).json()
    # assert: the three set aside with their reasons and values, the good one stored, nothing breaks
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["accepted"] == 1 and body["dead_letters"] == 3
    assert all("out of range" in r for r in body["reasons"]), body["reasons"]
    assert stats["events_stored"] == 1 and stats["dead_letters"] == 3
    assert entities.status_code == 200 and [e["entity"] for e in entities.json()] == ["dev-001"]
    assert {d["line"] for d in dead} == {1, 2, 3} and any("1e+300" in d["reason"] for d in dead)


@pytest.mark.filterwarnings("ignore:invalid value encountered in cast:RuntimeWarning")  # storing 1e300 as before
def test_rows_stored_with_times_out_of_range_break_no_endpoint(project: Project) -> None:
    # prepare: rows as versions before the range check stored them, beside normal traffic
    from misuse.service.backends import DuckStreamTables
    from misuse.store.duck import Store

    now = time.time()
    bad = [{"ts": 1e300, "entity": "dev-001", "event_id": "bad-1"}, {"ts": -1e12, "entity": "zz", "event_id": "bad-2"}]
    with Store(project.root) as store:
        DuckStreamTables(store).insert_new(bad, [now, now], "http", datetime.now(UTC))
    cfg = load_config({"project": project.root, "mqtt_enabled": False}, env={})
    viewer, admin = auth(project, "viewer"), auth(project, "admin")
    with TestClient(create_app(cfg, start_workers=False)) as api:
        replayed = api.app.state.service.processor.open_events()  # type: ignore[attr-defined]
        ingest_scan(api, project)
        # execute
        resp = {
            "entities": api.get("/api/entities", headers=viewer),
            "profile": api.get("/api/entities/zz/profile", headers=viewer),
            "stats": api.get("/api/stream/stats", headers=viewer),
            "alerts": api.get("/api/alerts?limit=1000", headers=viewer),
            "train": api.post("/api/models/train", json={"name": "m", "window": 0.5, "activate": False}, headers=admin),
        }
        flushed = api.app.state.service.processor.flush()  # type: ignore[attr-defined]
    # assert: every endpoint answers; the odd rows were neither replayed nor trained on nor alerted
    assert {k: r.status_code for k, r in resp.items()} == dict.fromkeys(resp, 200), {k: r.text for k, r in resp.items()}
    assert {e["entity"] for e in resp["entities"].json()} == {f"dev-{i:03d}" for i in range(N_ENTITIES)} | {"zz"}
    assert replayed == 0 and flushed.windows_scored > 0  # startup replay skipped the odd rows
    assert all(a["entity"] != "zz" for a in resp["alerts"].json()["alerts"])
    assert resp["train"].json()["info"]["train_windows"] > 0


def _brute_force(now: float, source: str = "203.0.113.9") -> list[dict[str, Any]]:
    fails = [
        {"ts": now + i, "entity": "root", "peer": source, "kind": "auth", "action": "login.failed",
         "event_id": f"bf-{i}", "cat": {"message": "Failed password for root"}}
        for i in range(12)
    ]  # fmt: skip
    ok = {
        "ts": now + 20,
        "entity": "root",
        "peer": source,
        "kind": "auth",
        "action": "login.success",
        "event_id": "bf-ok",
    }
    return [*fails, ok]


def test_the_rule_pack_runs_on_the_stream_once_per_event(api: TestClient, project: Project) -> None:
    # prepare: an SSH brute force followed by a success, posted twice (a client retrying the batch)
    events = _brute_force(time.time() - 60)
    analyst, viewer = auth(project, "analyst"), auth(project, "viewer")
    # execute
    first = api.post("/api/events", json={"events": events}, headers=analyst).json()
    again = api.post("/api/events", json={"events": events}, headers=analyst).json()
    alerts = api.get("/api/alerts?limit=1000", headers=viewer).json()["alerts"]
    metrics = api.get("/metrics", headers=viewer).text
    # assert: the correlation rules fire, once; the informational single-login rules are not alerts
    rule_alerts = [a for a in alerts if a["detector"].startswith("rule:")]
    kinds = {a["misuse_type"] for a in rule_alerts}
    assert first["alerts"] >= 2 and again["alerts"] == 0 and again["duplicates"] == len(events)
    assert {"brute_force", "unauthorized_access"} <= kinds
    assert all(a["entity"] in ("root", "203.0.113.9") and a["evidence"] for a in rule_alerts)
    assert len({a["alert_id"] for a in rule_alerts}) == len(rule_alerts) <= first["alerts"]
    from misuse.rules import builtin_pack

    quiet = {f"rule:{r.id}" for r in builtin_pack() if r.level == "informational"}
    assert quiet and not quiet & {a["detector"] for a in rule_alerts}
    assert "misuse_rule_events_total 13" in metrics


def test_rules_can_be_switched_off(project: Project) -> None:
    cfg = load_config({"project": project.root, "mqtt_enabled": False, "rules": "none"}, env={})
    with TestClient(create_app(cfg, start_workers=False)) as api:
        resp = api.post(
            "/api/events", json={"events": _brute_force(time.time() - 60)}, headers=auth(project, "analyst")
        )
        alerts = api.get("/api/alerts?limit=1000", headers=auth(project, "viewer")).json()["alerts"]
    assert resp.status_code == 200 and not [a for a in alerts if a["detector"].startswith("rule:")]
    with pytest.raises(Exception, match="setting 'rules'"):
        load_config({"project": project.root, "rules": "/no/such/rules"}, env={}).check()
