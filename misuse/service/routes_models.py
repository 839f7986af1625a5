"""Model routes: list, train, activate."""

from __future__ import annotations

import json

import pandas as pd
from fastapi import APIRouter

from misuse.events import events_to_frame
from misuse.pipeline import train
from misuse.service.deps import AdminDep, ServiceState, StateDep, ViewerDep
from misuse.service.errors import ApiError, error_docs
from misuse.service.schemas import ModelOut, OkOut, TrainIn
from misuse.service.stream import DATASET, stored_ts_ok

router = APIRouter(prefix="/api/models", tags=["models"], responses=error_docs(500))
MAX_TRAIN_EVENTS = 2_000_000


def _models(st: ServiceState) -> list[ModelOut]:
    with st.lock:
        df = st.store.models()
    return [
        ModelOut(
            name=r["name"],
            kind=r["kind"],
            created_at=pd.Timestamp(r["created_at"]).isoformat(),
            active=bool(r["active"]),
            loaded=r["name"] == st.processor.model_name,
            info=json.loads(r["info"] or "{}"),
        )
        for _, r in df.iterrows()
    ]


@router.get("", response_model=list[ModelOut], summary="Stored models", responses=error_docs(401))
def list_models(st: StateDep, _who: ViewerDep) -> list[ModelOut]:
    """Every stored model; ``loaded`` marks the one the stream is scored with."""
    return _models(st)


def _training_events(st: ServiceState, dataset: str) -> pd.DataFrame:
    with st.lock:
        if dataset != DATASET:
            known = st.store.dataset_names()
            if dataset not in known:
                listed = ", ".join(repr(d) for d in [*known, DATASET])
                raise ApiError(404, f"no dataset named {dataset!r} (known: {listed})")
            if not any(st.store.events_dir(dataset).glob("part-*.parquet")):
                raise ApiError(409, f"dataset {dataset!r} holds no events", code="no_data")
            return st.store.events(dataset)
        rows = st.store.con.execute(
            "SELECT record FROM stream_events ORDER BY ts DESC LIMIT ?", [MAX_TRAIN_EVENTS]
        ).fetchall()
    # a row stored before times were range-checked would make the whole frame unrepresentable
    records = [rec for rec in (json.loads(r[0]) for r in rows) if stored_ts_ok(rec)]
    if not records:
        raise ApiError(
            409, "no events received on the stream yet; ingest some or name a stored dataset", code="no_data"
        )
    return events_to_frame(records)


@router.post(
    "/train",
    response_model=ModelOut,
    summary="Train a window model",
    responses=error_docs(
        401,
        403,
        (404, "no stored dataset of this name"),
        (409, "no_data", "the dataset holds no events, or (dataset `stream`) none were received yet"),
        413,
        422,
    ),
)
def train_model(body: TrainIn, st: StateDep, _who: AdminDep) -> ModelOut:
    """Learn normal behaviour from a stored dataset (or the stream's events) and optionally activate it."""
    events = _training_events(st, body.dataset)
    model = train(events, window=body.window, target_fpr=body.target_fpr, detector=body.detector, seed=body.seed)
    model.info["dataset"] = body.dataset
    with st.lock:
        model.save(st.store.model_dir(body.name))
        st.store.register_model(body.name, "window", model.info, activate=body.activate)
    if body.activate:
        st.processor.load_model(body.name)
    return next(m for m in _models(st) if m.name == body.name)


@router.post(
    "/{name}/activate",
    response_model=OkOut,
    summary="Score the stream with this model",
    responses=error_docs(401, 403, (404, "no model of this name")),
)
def activate(name: str, st: StateDep, _who: AdminDep) -> OkOut:
    """Make a stored model the active one and load it into the worker."""
    with st.lock:
        row = st.store.con.execute("SELECT kind FROM models WHERE name = ?", [name]).fetchone()
        if row is None:
            raise ApiError(404, f"no model named {name!r}")
        st.store.con.execute("UPDATE models SET active = (name = ?) WHERE kind = ?", [name, row[0]])
    st.processor.load_model(name)
    return OkOut(detail=f"model {name} active")
