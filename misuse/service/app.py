"""The FastAPI application factory: API routes, dashboard, body-size limit, worker life cycle."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from misuse import __version__
from misuse.alerts.model import Alert
from misuse.rules import builtin_pack
from misuse.rules.derive import Enricher
from misuse.rules.engine import RuleEngine
from misuse.rules.model import load_rules
from misuse.service import errors, routes_admin, routes_alerts, routes_entities, routes_events, routes_models
from misuse.service.auth import TokenStore
from misuse.service.backends import open_store
from misuse.service.config import ServiceConfig
from misuse.service.deps import ServiceState, ViewerDep
from misuse.service.metrics import Metrics
from misuse.service.sse import AlertHub
from misuse.service.stream import StreamProcessor

log = logging.getLogger("misuse.service")
DASHBOARD = Path(__file__).parent / "dashboard"
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class _TooLargeError(Exception):
    pass


class BodyLimit:
    """ASGI middleware refusing request bodies over ``limit`` bytes (declared or streamed) with 413."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for k, v in scope.get("headers", []):
            if k == b"content-length" and v.isdigit() and int(v) > self.limit:
                await self._reject(send, f"request body of {int(v)} bytes (Content-Length)")
                return
        seen = 0
        started = False  # the app began its response: too late for a 413
        rejected = False  # the 413 went out: whatever the app does next is not sent

        async def limited() -> Message:
            nonlocal seen, rejected
            if rejected:
                return {"type": "http.disconnect"}
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.limit:
                    # answer now: the framework would turn an error raised while it reads the body into a 400
                    if not started:
                        rejected = True
                        await self._reject(send, f"streamed request body ({seen} bytes received so far)")
                    raise _TooLargeError
            return msg

        async def tracking(msg: Message) -> None:
            nonlocal started
            if rejected:
                return
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, limited, tracking)
        except _TooLargeError:
            pass  # answered with 413 above, or the app had already begun its response
        except Exception:
            if not rejected:
                raise
            # the app failed after the 413 was sent, not having its body: nothing more to say

    async def _reject(self, send: Send, what: str) -> None:
        resp = errors.error_response(413, f"{what} exceeds the limit of {self.limit} bytes (setting 'max_body_bytes')")
        await resp({"type": "http"}, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


def rule_engine(setting: str) -> RuleEngine | None:
    """The engine the ``rules`` setting names: the built-in pack, none, or a rule file or folder."""
    if setting == "none":
        return None
    rules = builtin_pack() if setting == "builtin" else load_rules(Path(setting))
    return RuleEngine(rules, enricher=Enricher())


def open_state(cfg: ServiceConfig) -> ServiceState:
    """Open the store, tokens and processor for a configuration (no network yet)."""
    store = open_store(cfg)
    lock = threading.RLock()
    metrics = Metrics()
    hub = AlertHub()
    st = ServiceState(
        cfg=cfg,
        store=store,
        lock=lock,
        processor=StreamProcessor(store, lock, metrics, worker=cfg.worker, rules=rule_engine(cfg.rules)),
        metrics=metrics,
        tokens=TokenStore(cfg.tokens_path),
        hub=hub,
    )
    st.processor.load_model()
    replayed = st.processor.recover()
    if replayed:
        log.info("replayed %d stored events of windows still open", replayed)
    return st


def _start_workers(st: ServiceState) -> None:
    from misuse.service.worker import MqttWorker, ZeekTailer

    publishers: list[Callable[[Alert], None]] = [lambda a: st.hub.publish({"type": "alert", "data": a.to_dict()})]
    if st.cfg.mqtt_enabled:
        mqtt = MqttWorker(st.cfg, st.processor, st.metrics)
        st.workers["mqtt"] = mqtt
        publishers.append(mqtt.publish_alert)

    def announce(alert: Alert) -> None:
        for publish in publishers:
            publish(alert)

    st.processor.on_alert = announce
    if "mqtt" in st.workers:
        st.workers["mqtt"].start()
    if st.cfg.zeek_tail:
        tail = ZeekTailer([Path(p) for p in st.cfg.zeek_tail], st.processor.ingest)
        st.workers["zeek"] = tail
        tail.start()


def _stop_workers(st: ServiceState) -> None:
    for name in ("zeek", "mqtt"):
        w = st.workers.pop(name, None)
        if w is not None:
            w.stop()


def _errors_in_one_shape(build: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    """The schema with every error response as what the API sends: the one JSON error body.

    FastAPI documents a route's declared errors in the route's own media type (text for
    ``/metrics``), and adds its own 422 body to every route with a path parameter; those parameters
    are plain strings, which cannot fail validation. Routes that can answer 422 declare it
    (:func:`misuse.service.errors.error_docs`).
    """

    def openapi() -> dict[str, Any]:
        spec = build()  # FastAPI builds it once and hands out the same dict afterwards
        shape = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
        for item in spec.get("paths", {}).values():
            for op in item.values():
                responses = op.get("responses", {})
                if "HTTPValidationError" in json.dumps(responses.get("422", {})):
                    del responses["422"]
                for status, doc in responses.items():
                    if status[:1] in ("4", "5"):
                        doc["content"] = shape
        for name in ("HTTPValidationError", "ValidationError"):
            spec.get("components", {}).get("schemas", {}).pop(name, None)
        return spec

    return openapi


def create_app(cfg: ServiceConfig, *, start_workers: bool = True, state: ServiceState | None = None) -> FastAPI:
    """Build the app.

    Parameters
    ----------
    cfg:
        The service configuration.
    start_workers:
        Start the MQTT worker and Zeek tailers with the app (off for API-only tests).
    state:
        An already opened state (default: :func:`open_state` at startup).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        st = state or open_state(cfg)
        app.state.service = st
        st.hub.bind(asyncio.get_running_loop())
        if start_workers:
            _start_workers(st)
        else:
            st.processor.on_alert = lambda a: st.hub.publish({"type": "alert", "data": a.to_dict()})
        try:
            yield
        finally:
            _stop_workers(st)
            with st.lock:
                st.store.close()

    app = FastAPI(
        title="misuse",
        version=__version__,
        summary="Live detection of misuse of IoT devices: ingest, alerts, entities, models.",
        lifespan=lifespan,
        # the schema and its Swagger UI are routes of their own below, behind the viewer role
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        openapi_tags=[
            {"name": "events", "description": "Ingest events; dead letters; stream accounting."},
            {"name": "alerts", "description": "Alerts, acknowledgement, analyst feedback, live feed."},
            {"name": "entities", "description": "Devices and users and their behaviour profiles."},
            {"name": "models", "description": "Trained models: list, train, activate."},
            {"name": "service", "description": "Health, metrics, tokens."},
        ],
    )
    errors.install(app)
    for r in (routes_events, routes_alerts, routes_entities, routes_models, routes_admin):
        app.include_router(r.router)
    app.openapi = _errors_in_one_shape(app.openapi)  # type: ignore[method-assign]

    @app.middleware("http")
    async def count_requests(request: Any, call_next: Any) -> Any:
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        if hasattr(request.app.state, "service"):
            request.app.state.service.metrics.inc(
                "misuse_http_requests_total", method=request.method, route=path, status=str(response.status_code)
            )
        return response

    @app.get("/openapi.json", include_in_schema=False)
    def openapi_schema(_who: ViewerDep) -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False)
    def swagger_ui(_who: ViewerDep) -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="misuse API")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(DASHBOARD / "index.html", headers={"Cache-Control": "no-store"})

    app.mount("/dashboard", StaticFiles(directory=DASHBOARD), name="dashboard")
    app.add_middleware(BodyLimit, limit=cfg.max_body_bytes)  # type: ignore[arg-type]
    return app
