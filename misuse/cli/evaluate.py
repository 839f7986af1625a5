"""``misuse eval <dataset>``: the evaluation harness on the real datasets, as tables or JSON.

``app`` is a typer sub-app; other modules add their own ``eval`` commands to it
(``evaluate.app.command("sea")(...)``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from misuse.cli.common import JsonOpt, console, emit_json, err_console, handled
from misuse.eval import datasets as ds
from misuse.eval.harness import DEFAULT_SEEDS, SUPERVISED, evaluate

app = typer.Typer(
    name="eval",
    help="Evaluate detectors on a real dataset (fixed split, training-set threshold, mean over seeds).",
    no_args_is_help=True,
)

DataOpt = Annotated[
    Path | None, typer.Option("--data", help="Shared data folder (env MISUSE_DATA_DIR, default ../shared/data).")
]
DetOpt = Annotated[str | None, typer.Option("--detectors", "-d", help="Comma-separated registered detector names.")]
SeedsOpt = Annotated[int, typer.Option("--seeds", help="Number of seeds (0..n-1); figures are their mean.")]
FprOpt = Annotated[float, typer.Option("--target-fpr", help="False-positive rate the training threshold aims at.")]
QuickOpt = Annotated[bool, typer.Option("--quick", help="One seed on a reduced dataset (a smoke run).")]
DeepQuickOpt = Annotated[
    bool,
    typer.Option(
        "--quick",
        help="One seed (0) and the simulator shrunk to 3 days at scale 0.2 (a smoke run); "
        "IoT-23 and MQTTset are still used whole.",
    ),
]

PACKET_DETECTORS = "kitnet,iforest,hst"
FLOW_DETECTORS = "iforest,kitnet,ecod,kmeans,ocsvm,autoencoder"


def _seeds(n: int, quick: bool) -> list[int]:
    return [0] if quick else list(DEFAULT_SEEDS[:n] if n <= len(DEFAULT_SEEDS) else range(n))


def _names(value: str | None, default: str) -> list[str]:
    return [d.strip() for d in (value or default).split(",") if d.strip()]


def _fmt(v: Any, pct: bool = False) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{100 * v:.1f}%" if pct else f"{v:.4f}"
    return str(v)


def _print(res: dict[str, Any], citation: str) -> None:
    console.print(f"[bold]{res['dataset']}[/]  seeds={res['seeds']}  rows={res['rows']}")
    console.print(f"[dim]split: {res['protocol']}[/]", soft_wrap=True)
    console.print(f"[dim]test classes: {res['test_classes']}  data: {citation}[/]", soft_wrap=True)
    if res["unsupervised"]:
        t = Table(title=f"unsupervised, threshold at {100 * res['target_fpr']:g}% FPR on calibration (mean over seeds)")
        for c in ("detector", "ROC-AUC", "PR-AUC", "TPR@0.1%", "TPR@1%", "recall@thr", "FPR@thr", "F1"):
            t.add_column(c, no_wrap=True)
        details = []
        for name, r in res["unsupervised"].items():
            m = r["mean"]
            rows = [(name, m)] + ([(f"{name} dedup", m["dedup"])] if "dedup" in m else [])
            for label, mm in rows:
                t.add_row(
                    label,
                    _fmt(mm["roc_auc"]),
                    _fmt(mm["pr_auc"]),
                    _fmt(mm["tpr_at_0.1%fpr"], True),
                    _fmt(mm["tpr_at_1%fpr"], True),
                    _fmt(mm["recall"], True),
                    _fmt(mm["fpr"], True),
                    _fmt(mm["f1"]),
                )
                per = ", ".join(
                    f"{c} {_fmt(v, True)} (AUC {_fmt(mm['roc_auc_by_class'].get(c))})"
                    for c, v in mm["recall_by_class"].items()
                )
                if per:  # a benign-only split (Kitsune's prefix) has no attack class
                    details.append(f"  {label}: recall at threshold by class: {per}")
            if m.get("delay_s"):
                delay = ", ".join(f"{k} {_fmt(v)}" for k, v in m["delay_s"].items())
                details.append(f"  {name}: detection delay (s): {delay}")
        console.print(t)
        for line in details:
            console.print(line, soft_wrap=True, highlight=False)
    if res["supervised"]:
        t = Table(title="supervised (mean over seeds)")
        for c in ("classifier", "macro-F1", "accuracy", "recall by class"):
            t.add_column(c)
        for kind, r in res["supervised"].items():
            m = r["mean"]
            per = ", ".join(f"{c} {_fmt(v, True)}" for c, v in m["recall_by_class"].items())
            t.add_row(kind, _fmt(m["macro_f1"]), _fmt(m["accuracy"]), per)
        console.print(t)


def _run(
    splits: list[ds.Split], dataset: str, detectors: list[str], seeds: list[int], fpr: float, dedup: bool,
    supervised: tuple[str, ...], as_json: bool,
) -> None:  # fmt: skip
    results = []
    for split in splits:
        res = evaluate(
            split,
            detectors,
            seeds,
            fpr,
            dedup=dedup,
            supervised=supervised,
            progress=None if as_json else (lambda msg: err_console.print(f"[dim]{msg}[/]")),
        )
        res["citation"] = ds.CITATIONS[dataset]
        results.append(res)
        if not as_json:
            _print(res, ds.CITATIONS[dataset])
    if as_json:
        emit_json(results[0] if len(results) == 1 else results)


@app.command("iot23")
def iot23(
    data: DataOpt = None,
    detectors: DetOpt = None,
    seeds: SeedsOpt = 5,
    target_fpr: FprOpt = 0.01,
    quick: QuickOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """IoT-23 34-1 flows: honeypots + pre-infection benign to train, every later 34-1 flow to test."""
    with handled():
        split = ds.iot23(ds.data_root(data))
        names = _names(detectors, "iforest,kitnet" if quick else FLOW_DETECTORS)
        _run([split], "iot23", names, _seeds(seeds, quick), target_fpr, True, (), as_json)


@app.command("mqttset")
def mqttset(
    data: DataOpt = None,
    detectors: DetOpt = None,
    seeds: SeedsOpt = 5,
    target_fpr: FprOpt = 0.01,
    addresses: Annotated[
        str, typer.Option("--addresses", help="with, without or both (address/port/link-type features).")
    ] = "both",
    quick: QuickOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """MQTTset packets through AfterImage: per attack class, with and without address features."""
    with handled():
        root = ds.data_root(data)
        modes = {"with": [True], "without": [False], "both": [True, False]}.get(addresses)
        if modes is None:
            raise typer.BadParameter(f"--addresses must be with, without or both, not {addresses!r}")
        limit = 6000 if quick else None
        splits = [ds.mqttset(root, with_addresses=m, limit=limit) for m in modes]
        names = _names(detectors, "kitnet" if quick else PACKET_DETECTORS)
        _run(splits, "mqttset", names, _seeds(seeds, quick), target_fpr, False, (), as_json)


@app.command("toniot")
def toniot(
    device: Annotated[str, typer.Option("--device", help="One device or 'all'.")] = "all",
    data: DataOpt = None,
    detectors: DetOpt = None,
    seeds: SeedsOpt = 5,
    target_fpr: FprOpt = 0.01,
    quick: QuickOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """TON_IoT telemetry per device: supervised macro-F1 and unsupervised ROC-AUC."""
    with handled():
        root = ds.data_root(data)
        devices = list(ds.TONIOT_DEVICES) if device == "all" else [device]
        limit = 3000 if quick else None
        splits = [ds.toniot(root, d, limit=limit) for d in devices]
        names = _names(detectors, "iforest" if quick else "iforest,kitnet,ecod,hst")
        sup = ("random_forest",) if quick else SUPERVISED
        _run(splits, "toniot", names, _seeds(seeds, quick), target_fpr, False, sup, as_json)


@app.command("nbaiot")
def nbaiot(
    data: DataOpt = None,
    detectors: DetOpt = None,
    seeds: SeedsOpt = 5,
    target_fpr: FprOpt = 0.01,
    quick: QuickOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """N-BaIoT rows: schema check against AfterImage's names, per-class recall."""
    with handled():
        split = ds.nbaiot(ds.data_root(data))
        names = _names(detectors, "kitnet,iforest" if quick else "kitnet,iforest,ecod,autoencoder,ocsvm")
        sup = ("random_forest",) if quick else SUPERVISED
        _run([split], "nbaiot", names, _seeds(seeds, quick), target_fpr, False, sup, as_json)


@app.command("kitsune")
def kitsune(
    data: DataOpt = None,
    detectors: DetOpt = None,
    seeds: SeedsOpt = 5,
    target_fpr: FprOpt = 0.01,
    quick: QuickOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Kitsune's benign Mirai prefix: the false-positive rate after training on its first part."""
    with handled():
        split = ds.kitsune(ds.data_root(data), limit=8000 if quick else None)
        names = _names(detectors, "kitnet" if quick else PACKET_DETECTORS)
        _run([split], "kitsune", names, _seeds(seeds, quick), target_fpr, False, (), as_json)


@app.command("deep")
def deep(
    only: Annotated[
        str | None, typer.Option("--only", help="iot23, mqttset or simulator (default: all three).")
    ] = None,
    seeds: SeedsOpt = 5,
    quick: DeepQuickOpt = False,
    data: DataOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Deep IDS (packet-sequence CNN, flow-graph GNN) beside the classic detectors, same splits and seeds.

    IoT-23 34-1, MQTTset and the simulator; threshold at 1% FPR on benign calibration rows from the
    training data; training time and rows/s on this machine. See docs/deep_ids.md.
    """
    from misuse.eval.deep import run

    with handled():
        root = ds.data_root(data) if only != "simulator" else Path(".")
        res = run(root, _seeds(seeds, quick), only, echo=not as_json, quick=quick)
        if as_json:
            emit_json(res)
