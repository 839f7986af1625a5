"""Health, metrics, the caller's identity and token administration."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from misuse import __version__
from misuse.service.deps import AdminDep, StateDep, ViewerDep
from misuse.service.errors import ApiError, error_docs
from misuse.service.schemas import HealthOut, OkOut, TokenIn, TokenOut, WhoAmI

router = APIRouter(tags=["service"], responses=error_docs(500))


@router.get("/api/health", response_model=HealthOut, summary="Liveness (no token needed)")
def health(st: StateDep) -> HealthOut:
    """Whether the store answers, the broker connection, the loaded model. Reveals no data."""
    try:
        with st.lock:
            st.store.con.execute("SELECT 1").fetchone()
        store_ok = True
    except Exception:
        store_ok = False
    mqtt = "disabled"
    worker = st.workers.get("mqtt")
    if worker is not None:
        mqtt = "connected" if worker.connected.is_set() else "disconnected"
    ok = store_ok and mqtt != "disconnected"
    return HealthOut(
        status="ok" if ok else "degraded",
        version=__version__,
        store=store_ok,
        mqtt=mqtt,  # type: ignore[arg-type]
        model=st.processor.model_name,
        auth=not st.cfg.insecure_dev,
    )


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    summary="Prometheus metrics",
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format 0.0.4"}, **error_docs(401)},
)
def metrics(st: StateDep, _who: ViewerDep) -> PlainTextResponse:
    """Counters, gauges and histograms in the Prometheus text format."""
    return PlainTextResponse(st.metrics.render(), media_type="text/plain; version=0.0.4")


@router.get("/api/whoami", response_model=WhoAmI, summary="The caller's token name and role", responses=error_docs(401))
def whoami(who: ViewerDep) -> WhoAmI:
    """Used by the dashboard to check a token at login."""
    return WhoAmI(name=who.name, role=who.role)


@router.get(
    "/api/tokens",
    response_model=list[TokenOut],
    summary="API tokens (hashed; ids only)",
    responses=error_docs(401, 403),
)
def list_tokens(st: StateDep, _who: AdminDep) -> list[TokenOut]:
    """Every token's id, name, role and creation time."""
    return [TokenOut(**t.public()) for t in st.tokens.list()]


@router.post(
    "/api/tokens",
    response_model=TokenOut,
    status_code=201,
    summary="Create an API token",
    responses=error_docs(401, 403, 413, 422),
)
def create_token(body: TokenIn, st: StateDep, _who: AdminDep) -> TokenOut:
    """The response is the only place the token appears; only its hash is stored."""
    token = st.tokens.create(body.name, body.role)
    info = st.tokens.verify(token)
    assert info is not None
    return TokenOut(**info.public(), token=token)


@router.delete(
    "/api/tokens/{token_id}",
    response_model=OkOut,
    summary="Revoke an API token",
    responses=error_docs(401, 403, (404, "no token with this id")),
)
def revoke_token(token_id: str, st: StateDep, _who: AdminDep) -> OkOut:
    """Delete a token; requests with it fail from now on."""
    if token_id not in {t.token_id for t in st.tokens.list()}:
        raise ApiError(404, f"no token with id {token_id!r}")  # the store's own message names its file
    st.tokens.revoke(token_id)
    return OkOut(detail=f"token {token_id} revoked")
