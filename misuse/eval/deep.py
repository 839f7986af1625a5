"""Deep IDS beside the classic detectors: the packet-sequence CNN and the flow-graph GNN on IoT-23 34-1,
MQTTset and the simulator, on the evaluation harness's splits, seeds and training-set thresholds.

Usage: ``misuse eval deep [--only iot23|mqttset|simulator] [--seeds 5] [--json]``, or
``python benchmarks/deep_ids.py`` (the same at full size, for ``make bench``).

Protocol (unsupervised, as ``misuse eval``): every model learns benign training rows only; an
:class:`~misuse.detectors.threshold.FPRThreshold` at 1% FPR is fitted on the scores of the held-out
benign *calibration* rows; the test rows are scored once. Reported: ROC-AUC and PR-AUC (ranking),
recall / FPR / F1 at the training-set threshold (the operating point that counts), per-class recall,
mean training time per seed and inference throughput (rows scored per second, this machine).

IoT-23 34-1 (:func:`misuse.eval.datasets.iot23`, rows = Zeek flows). There is no 34-1 pcap, so the
CNN reads a sequence rebuilt from each flow's Zeek ``history`` (see
:func:`misuse.features.packetseq.history_sequences`): event shape, not packets. The GNN's edges are
the flows with the harness's own flow features; nodes are hosts per 60 s window.

MQTTset (:func:`misuse.eval.datasets.mqttset` with ``with_addresses=False``: attack captures' hosts
rewritten onto the benign broker/client, AfterImage without addresses). The harness scores packets;
the deep models score flow segments (bidirectional flows cut into 10 s windows as in Lucid, first 20
packets each), so the classic packet detectors are reported twice: per packet (the harness view)
and per segment (max packet score over the segment's packets, threshold fitted on calibration
segments). Benign segments whose first packet lies in the first 80% of benign-5mb-train are
training, the rest calibration.

Simulator (:func:`misuse.simulate.simulate_site`, seed 7, 4 days, scale 0.5; the harness has no
simulator split): clean days train, the last 25% (time) of each device's clean flows calibration,
the attack day test, with IoT-23's flow features and models.

Supervised (beside it): IoT-23: the harness's rows of 34-1 and the honeypots, first 70% (time) of
every class train, last 30% test. MQTTset: benign-5mb-train plus every attack's ``-train`` capture
train, the unsupervised test set test. Random forest on the same inputs is the classic reference.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from misuse.alerts.graph import graph_alerts
from misuse.detectors.cnn import PacketCNN
from misuse.detectors.gnn import FlowGraphSAGE
from misuse.detectors.registry import make_detector
from misuse.detectors.supervised import class_report, make_classifier
from misuse.detectors.threshold import FPRThreshold
from misuse.errors import InvalidParameterError
from misuse.eval import datasets as ds
from misuse.eval.metrics import binary_metrics
from misuse.features.flows import FLOW_NUMS, iot23_flow_features, read_iot23_flows
from misuse.features.packetseq import flow_summary, history_sequences, packet_sequences, to_frame
from misuse.ingest.pcap_stream import PacketArrays
from misuse.ingest.zeek import ZeekReader
from misuse.simulate import simulate_site

TARGET_FPR = 0.01


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


CLASSIC_FLOW = ("iforest", "kitnet", "ecod", "autoencoder")
CLASSIC_PACKET = ("kitnet", "iforest")
HISTORY_STEPS = 12
MQTT_PACKETS = 20
MQTT_WINDOW = 10.0


# ----- scoring helpers ---------------------------------------------------------------------------
def operating_point(y: np.ndarray, cls: np.ndarray, calib: np.ndarray, test: np.ndarray) -> dict[str, Any]:
    """Harness figures for one run: threshold from calibration scores only."""
    thr = FPRThreshold(TARGET_FPR).fit(calib)
    alarms = np.asarray(thr.is_alarm(test))
    m = binary_metrics(y, test, alarms)
    m["recall_by_class"] = {str(c): float(alarms[cls == c].mean()) for c in np.unique(cls[y == 1])}
    m["calibration_fpr"] = float(np.mean(thr.is_alarm(calib)))
    return m


def _fit_registered(name: str, X: pd.DataFrame, seed: int) -> Any:
    """A registered detector of this seed, trained on ``X``."""
    return make_detector(name, seed=seed).learn_many(X)


def _next_of(it: Any, _model: Any) -> Any:
    return next(it)


def run_seeds(
    seeds: list[int], fit: Callable[[int], Any], calib: Callable[[Any], np.ndarray],
    test: Callable[[Any], np.ndarray], y: np.ndarray, cls: np.ndarray,
) -> dict[str, Any]:  # fmt: skip
    """Train/score per seed; mean figures, mean training seconds and test rows scored per second."""
    runs, fit_s, rate = [], [], []
    for s in seeds:
        t0 = time.perf_counter()
        model = fit(s)
        fit_s.append(time.perf_counter() - t0)
        c = calib(model)
        t0 = time.perf_counter()
        t = test(model)
        rate.append(len(t) / max(time.perf_counter() - t0, 1e-9))
        runs.append(operating_point(y, cls, c, t))
    keys = ("roc_auc", "pr_auc", "recall", "fpr", "precision", "f1", "calibration_fpr")
    out: dict[str, Any] = {k: _avg([r[k] for r in runs]) for k in keys}
    out["roc_auc_std"] = float(np.std([r["roc_auc"] or 0.0 for r in runs]))
    out["recall_by_class"] = {c: _avg([r["recall_by_class"][c] for r in runs]) for c in runs[0]["recall_by_class"]}
    out["train_s"] = float(np.mean(fit_s))
    out["rows_per_s"] = float(np.mean(rate))
    return out


def _avg(v: list[Any]) -> float | None:
    return None if any(x is None for x in v) else float(np.mean(v))


def supervised_runs(
    seeds: list[int], fit: Callable[[int], Any], proba: Callable[[Any], tuple[np.ndarray, np.ndarray]],
    y_test: np.ndarray,
) -> dict[str, Any]:  # fmt: skip
    """Supervised figures: macro-F1 and per-class recall of the argmax, ROC-AUC of P(not benign)."""
    reps, aucs, fit_s = [], [], []
    for s in seeds:
        t0 = time.perf_counter()
        model = fit(s)
        fit_s.append(time.perf_counter() - t0)
        pred, p_mal = proba(model)
        reps.append(class_report(y_test, pred))
        aucs.append(float(roc_auc_score(y_test != "benign", p_mal)))
    return {
        "macro_f1": float(np.mean([r["macro_f1"] for r in reps])),
        "macro_f1_by_seed": [float(r["macro_f1"]) for r in reps],
        "roc_auc": float(np.mean(aucs)),
        "recall_by_class": {
            c: float(np.mean([r["per_class"][c]["recall"] for r in reps])) for c in reps[0]["per_class"]
        },
        "train_s": float(np.mean(fit_s)),
    }


def _rf(seed: int, X: pd.DataFrame, y: np.ndarray) -> Any:
    return make_classifier("random_forest", seed=seed).fit(X, y)


def _rf_out(clf: Any, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    p = clf.predict_proba(X)
    benign = list(clf.classes_).index("benign")
    return clf.classes_[p.argmax(axis=1)], 1.0 - p[:, benign]


# ----- IoT-23 -------------------------------------------------------------------------------------
def _iot23_file(path: Path) -> pd.DataFrame:
    flows = read_iot23_flows(path)
    if path.suffix == ".csv":
        hist = pd.read_csv(path)["history"].fillna("-").astype(str).to_numpy()
    else:
        ev = pd.concat(list(ZeekReader().batches(path)), ignore_index=True)
        hist = ev["cat.history"].fillna("-").astype(str).to_numpy()
    if len(hist) != len(flows):
        raise SystemExit(f"{path}: {len(flows)} flows but {len(hist)} history values")
    return flows.assign(history=hist)


def iot23_rows(root: Path) -> tuple[ds.Split, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The harness split and, row-aligned with its train/calib/test, the raw flows (with history)."""
    split = ds.iot23(root)
    base = root / "iot23"
    honey = [
        _iot23_file(base / "CTU-Honeypot-Capture-4-1" / "bro" / "conn.log.labeled"),
        _iot23_file(base / "CTU-Honeypot-Capture-5-1" / "bro" / "conn.log.labeled"),
        _iot23_file(base / "CTU-Honeypot-Capture-7-1" / "conn_labeled_subset.csv"),
    ]
    mal = _iot23_file(base / "CTU-IoT-Malware-Capture-34-1" / "bro" / "conn.log.labeled")
    t_inf = float(mal.loc[mal["label"] != "benign", "ts"].min())
    train_flows = pd.concat([*honey, mal[mal["ts"] < t_inf]], ignore_index=True)
    post = mal[mal["ts"] >= t_inf].reset_index(drop=True)
    cal = train_flows.groupby("entity")["ts"].rank(pct=True).to_numpy() > 0.75
    tr, ca = train_flows[~cal].reset_index(drop=True), train_flows[cal].reset_index(drop=True)
    for raw, feats in ((tr, split.train), (ca, split.calib), (post, split.test)):
        mine = np.log1p(raw["duration"].to_numpy(dtype="float64").clip(min=0))
        if len(raw) != len(feats) or not np.allclose(mine, feats["flow:duration"].to_numpy(), equal_nan=True):
            raise SystemExit("IoT-23 raw flows are not row-aligned with the harness split")
    return split, tr, ca, post


def _history_frame(flows: pd.DataFrame) -> pd.DataFrame:
    seq = history_sequences(
        flows["history"].to_numpy(),
        flows["orig_pkts"].to_numpy(),
        flows["resp_pkts"].to_numpy(),
        flows["orig_bytes"].to_numpy(),
        flows["resp_bytes"].to_numpy(),
        flows["duration"].to_numpy(),
        n_packets=HISTORY_STEPS,
    )
    return to_frame(seq)


def _graph_frame(flows: pd.DataFrame, feats: pd.DataFrame) -> pd.DataFrame:
    return feats.reset_index(drop=True).assign(
        src=flows["entity"].astype(str).to_numpy(), dst=flows["peer"].astype(str).to_numpy(), ts=flows["ts"].to_numpy()
    )


def flow_unsupervised(
    U: dict[str, Any], seeds: list[int], split: ds.Split, tr: pd.DataFrame, ca: pd.DataFrame, te: pd.DataFrame,
    tag: str,
) -> None:  # fmt: skip
    """Classic detectors on the flow features; CNN on the history sequence (alone and with the flow
    features); GNN with the flow features as edges. ``tr``/``ca``/``te`` are the raw flows,
    row-aligned with ``split.train``/``calib``/``test``."""
    y, cls = split.y_test, split.cls_test
    for name in CLASSIC_FLOW:
        U[f"{name} (flow features)"] = run_seeds(
            seeds,
            partial(_fit_registered, name, split.train),
            lambda d: d.score_many(split.calib),
            lambda d: d.score_many(split.test),
            y,
            cls,
        )
        _progress(f"  {tag} {name} done")
    H = {k: _history_frame(f) for k, f in (("tr", tr), ("ca", ca), ("te", te))}
    U["cnn (history sequence)"] = run_seeds(
        seeds,
        lambda s: PacketCNN(seed=s).learn_many(H["tr"]),
        lambda d: d.score_many(H["ca"]),
        lambda d: d.score_many(H["te"]),
        y,
        cls,
    )
    HF = {
        k: pd.concat([H[k], f.reset_index(drop=True)], axis=1)
        for k, f in (("tr", split.train), ("ca", split.calib), ("te", split.test))
    }
    U["cnn (history + flow features)"] = run_seeds(
        seeds,
        lambda s: PacketCNN(seed=s).learn_many(HF["tr"]),
        lambda d: d.score_many(HF["ca"]),
        lambda d: d.score_many(HF["te"]),
        y,
        cls,
    )
    G = {
        k: _graph_frame(f, x) for k, f, x in (("tr", tr, split.train), ("ca", ca, split.calib), ("te", te, split.test))
    }
    U["gnn (flow features + graph)"] = run_seeds(
        seeds,
        lambda s: FlowGraphSAGE(seed=s, window=60.0).learn_many(G["tr"]),
        lambda d: d.score_many(G["ca"]),
        lambda d: d.score_many(G["te"]),
        y,
        cls,
    )


def gnn_alert_summary(
    split: ds.Split, tr: pd.DataFrame, ca: pd.DataFrame, te: pd.DataFrame, seed: int = 0, examples: int = 3
) -> dict[str, Any]:
    """The unsupervised GNN's scores as alerts: one per host and 60 s window above the training-set
    threshold, with how many fall on windows holding malicious flows and a few examples."""
    G = {
        k: _graph_frame(f, x) for k, f, x in (("tr", tr, split.train), ("ca", ca, split.calib), ("te", te, split.test))
    }
    model = FlowGraphSAGE(seed=seed, window=60.0).learn_many(G["tr"])
    thr = FPRThreshold(TARGET_FPR).fit(model.score_many(G["ca"]))
    devices = set(pd.concat([tr, ca, te])["entity"].astype(str))  # the hosts that originate flows: the site's own
    alerts = graph_alerts(model, G["te"], thr, ids=[f"test flow {i}" for i in range(len(te))], entities=devices)
    malicious = te["label"].astype(str).str.lower().to_numpy() != "benign"
    win = np.floor(te["ts"].to_numpy(dtype="float64") / 60.0) * 60.0
    bad = {
        (h, w)
        for h, w, m in zip(
            np.r_[te["entity"].astype(str), te["peer"].astype(str)],
            np.r_[win, win],
            np.r_[malicious, malicious],
            strict=True,
        )
        if m
    }
    on_bad = sum((a.entity, a.window_start.timestamp()) in bad for a in alerts)
    return {
        "seed": seed,
        "threshold": thr.threshold_,
        "alerts": len(alerts),
        "entities": sorted({a.entity for a in alerts}),
        "alerts_on_malicious_windows": on_bad,
        "examples": [a.to_dict() for a in alerts[:examples]],
    }


def bench_sim(seeds: list[int], days: int = 4, scale: float = 0.5, site_seed: int = 7) -> dict[str, Any]:
    """The simulator's site: clean days train (last 25% in time of each device calibration), the
    attack day test; features and rules as for IoT-23 (the harness has no simulator split)."""
    site = simulate_site(seed=site_seed, days=days, scale=scale)
    ev = site.flows
    flows = pd.DataFrame(
        {
            "ts": ev["ts"].to_numpy(dtype="datetime64[ns]").astype(np.int64) / 1e9,
            "entity": ev["entity"].astype(str).to_numpy(),
            "peer": ev["peer"].astype(str).to_numpy(),
            "dst_port": ev["num.dst_port"].to_numpy(dtype="float64"),
            "proto": ev["cat.proto"].astype(str).to_numpy(),
            "conn_state": ev["cat.conn_state"].astype(str).to_numpy(),
            "label": ev["label"].astype(str).to_numpy(),
            "history": ev["cat.history"].fillna("-").astype(str).to_numpy(),
        }
    )
    for c in FLOW_NUMS:
        flows[c] = ev[f"num.{c}"].to_numpy(dtype="float64")
    day0 = float(np.floor(flows["ts"].min() / 86400) * 86400)
    attack_day = (flows["ts"] - day0) // 86400 == days - 1
    clean, te = flows[~attack_day].reset_index(drop=True), flows[attack_day].reset_index(drop=True)
    f_clean, baseline = iot23_flow_features(clean)
    f_te, _ = iot23_flow_features(te, baseline=baseline)
    cal = clean.groupby("entity")["ts"].rank(pct=True).to_numpy() > 0.75
    cls = te["label"].to_numpy()
    split = ds.Split(
        "simulator",
        f_clean[~cal].reset_index(drop=True),
        f_clean[cal].reset_index(drop=True),
        f_te.reset_index(drop=True),
        (cls != "benign").astype(int),
        cls,
        f"simulate_site(seed={site_seed}, days={days}, scale={scale}): flows of the clean days train, the last 25% "
        "(time) of each device's clean flows calibration, every flow of the attack day test; IoT-23's flow features.",
    )
    res: dict[str, Any] = {
        "dataset": "simulator",
        "protocol": split.protocol,
        "rows": {"train": len(split.train), "calibration": len(split.calib), "test": len(split.test)},
        "test_classes": {str(k): int(v) for k, v in zip(*np.unique(cls, return_counts=True), strict=True)},
        "unsupervised": {},
        "supervised": {},
    }
    tr, ca = clean[~cal].reset_index(drop=True), clean[cal].reset_index(drop=True)
    flow_unsupervised(res["unsupervised"], seeds, split, tr, ca, te, "sim")
    return res


def bench_iot23(root: Path, seeds: list[int]) -> dict[str, Any]:
    split, tr, ca, te = iot23_rows(root)
    cls = split.cls_test
    res: dict[str, Any] = {
        "dataset": "iot23 34-1",
        "protocol": split.protocol,
        "rows": {"train": len(tr), "calibration": len(ca), "test": len(te)},
        "test_classes": {str(k): int(v) for k, v in zip(*np.unique(cls, return_counts=True), strict=True)},
        "unsupervised": {},
        "supervised": {},
    }
    flow_unsupervised(res["unsupervised"], seeds, split, tr, ca, te, "iot23")
    res["gnn_alerts"] = gnn_alert_summary(split, tr, ca, te, seed=seeds[0])
    _progress("  iot23 deep unsupervised done")
    # supervised: all harness rows, first 70% (time) of every class train
    feats = pd.concat([split.train, split.calib, split.test], ignore_index=True)
    raw = pd.concat([tr, ca, te], ignore_index=True)
    labels = raw["label"].to_numpy().astype(str)
    order = np.argsort(raw["ts"].to_numpy(), kind="stable")
    feats, raw, labels = feats.iloc[order].reset_index(drop=True), raw.iloc[order].reset_index(drop=True), labels[order]
    s_tr, s_te = ds._per_class_time_split(labels, 0.7)
    hist = _history_frame(raw)
    HFs = pd.concat([hist, feats], axis=1)
    Gs = _graph_frame(raw, feats)
    res["supervised_rows"] = {"train": len(s_tr), "test": len(s_te)}
    S = res["supervised"]
    y_te = labels[s_te]
    S["random_forest (flow features)"] = supervised_runs(
        seeds, lambda s: _rf(s, feats.iloc[s_tr], labels[s_tr]), lambda c: _rf_out(c, feats.iloc[s_te]), y_te
    )
    S["cnn classify (history + flow features)"] = supervised_runs(
        seeds,
        lambda s: PacketCNN(mode="classify", seed=s).fit(HFs.iloc[s_tr], labels[s_tr]),
        lambda m: (m.predict(HFs.iloc[s_te]), m.score_many(HFs.iloc[s_te])),
        y_te,
    )
    S["gnn classify (flow features + graph)"] = supervised_runs(
        seeds,
        lambda s: FlowGraphSAGE(mode="classify", seed=s).fit(Gs.iloc[s_tr], labels[s_tr]),
        lambda m: (m.classes_[m.predict_proba(Gs.iloc[s_te]).argmax(axis=1)], m.score_many(Gs.iloc[s_te])),
        y_te,
    )
    _progress("  iot23 supervised done")
    return res


# ----- MQTTset ------------------------------------------------------------------------------------
def mqtt_parts(root: Path) -> tuple[PacketArrays, list[tuple[str, PacketArrays]], list[tuple[str, PacketArrays]]]:
    """The harness's no-address packet stream (train, then test parts) and the attacks' -train files."""
    base = root / "mqttset"
    train_arr = ds._pcap(base / "benign-5mb" / "benign-5mb-train.pcap")
    broker = ds._most_common(train_arr.dst_lo[train_arr.dst_port == 1883])
    client = ds._most_common(train_arr.src_lo[train_arr.dst_port == 1883])
    parts = [("benign", ds._pcap(base / "benign-5mb" / "benign-5mb-test.pcap"))]
    for c in ds.MQTT_CLASSES:
        parts.append((c, ds._pcap(base / c / f"{c}-test.{'pcapng' if c == 'bruteforce' else 'pcap'}")))
    end = int(train_arr.ts_ns[-1])
    test = []
    for c, arr in parts:
        arr = ds._shift_after(arr, end)
        if c != "benign":
            arr = ds._rewrite_addresses(arr, broker, client)
        end = int(arr.ts_ns[-1])
        test.append((c, arr))
    sup = []
    for c in ds.MQTT_CLASSES:
        arr = ds._pcap(base / c / f"{c}-train.{'pcapng' if c == 'bruteforce' else 'pcap'}")
        arr = ds._rewrite_addresses(ds._shift_after(arr, end), broker, client)
        end = int(arr.ts_ns[-1])
        sup.append((c, arr))
    return train_arr, test, sup


def _segments(arr: PacketArrays) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray, np.ndarray]:
    """Sequence frame, graph frame, packet -> segment map and each segment's first packet."""
    fs = packet_sequences(arr, n_packets=MQTT_PACKETS, window=MQTT_WINDOW)
    first = np.full(len(fs.flows), len(arr), dtype=np.int64)
    ok = fs.packet_flow >= 0
    np.minimum.at(first, fs.packet_flow[ok], np.flatnonzero(ok))
    graph = flow_summary(fs.seq).assign(
        src=fs.flows["src"].to_numpy(), dst=fs.flows["dst"].to_numpy(), ts=fs.flows["first_ts"].to_numpy()
    )
    return to_frame(fs.seq), graph, fs.packet_flow, first


def _seg_max(packet_scores: np.ndarray, packet_seg: np.ndarray, n_seg: int) -> np.ndarray:
    out = np.full(n_seg, -np.inf)
    ok = packet_seg >= 0
    np.maximum.at(out, packet_seg[ok], packet_scores[ok])
    return out


def bench_mqtt(root: Path, seeds: list[int]) -> dict[str, Any]:
    split = ds.mqttset(root, with_addresses=False)
    train_arr, test_parts, sup_parts = mqtt_parts(root)
    if len(train_arr) != len(split.train) + len(split.calib) or sum(len(a) for _, a in test_parts) != len(split.test):
        raise SystemExit("MQTTset packet arrays are not aligned with the harness split")
    seq_tr, g_tr, pk_tr, first_tr = _segments(train_arr)
    cut = round(len(train_arr) * 0.8)
    is_tr = first_tr < cut
    segs = [(c, *_segments(a)) for c, a in test_parts]
    seq_te = pd.concat([s[1] for s in segs], ignore_index=True)
    cls_seg = np.concatenate([np.full(len(s[1]), s[0]) for s in segs])
    y_seg = (cls_seg != "benign").astype(int)
    # graph frames: one graph over the whole test stream (parts are disjoint in time)
    g_te = pd.concat([s[2] for s in segs], ignore_index=True)
    offsets = np.cumsum([0] + [len(s[1]) for s in segs])[:-1]
    pk_te = np.concatenate([np.where(s[3] >= 0, s[3] + o, -1) for s, o in zip(segs, offsets, strict=True)])
    X = {"tr": seq_tr[is_tr].reset_index(drop=True), "ca": seq_tr[~is_tr].reset_index(drop=True), "te": seq_te}
    XS = {k: pd.concat([v, flow_summary_frame(v)], axis=1) for k, v in X.items()}
    G = {"tr": g_tr[is_tr].reset_index(drop=True), "ca": g_tr[~is_tr].reset_index(drop=True), "te": g_te}
    res: dict[str, Any] = {
        "dataset": "mqttset/no-address",
        "protocol": split.protocol,
        "rows": {
            "packets": {"train": len(split.train), "calibration": len(split.calib), "test": len(split.test)},
            "segments": {"train": int(is_tr.sum()), "calibration": int((~is_tr).sum()), "test": len(seq_te)},
        },
        "test_classes_segments": {str(k): int(v) for k, v in zip(*np.unique(cls_seg, return_counts=True), strict=True)},
        "test_classes_packets": {
            str(k): int(v) for k, v in zip(*np.unique(split.cls_test, return_counts=True), strict=True)
        },
        "unsupervised": {},
        "supervised": {},
    }
    U = res["unsupervised"]
    packet_all = pd.concat([split.train, split.calib], ignore_index=True)
    for name in CLASSIC_PACKET:
        seg_runs: list[np.ndarray] = []  # per seed: segment scores of calibration, then test

        def _calib(d: Any, keep: list[np.ndarray] = seg_runs) -> np.ndarray:
            s_all = d.score_many(packet_all)
            keep.append(_seg_max(s_all, pk_tr, len(seq_tr))[~is_tr])
            return np.asarray(s_all[len(split.train) :])

        def _test(d: Any, keep: list[np.ndarray] = seg_runs) -> np.ndarray:
            s_te = np.asarray(d.score_many(split.test))
            keep.append(_seg_max(s_te, pk_te, len(seq_te)))
            return s_te

        per_packet = run_seeds(
            seeds,
            partial(_fit_registered, name, split.train),
            _calib,
            _test,
            split.y_test,
            split.cls_test,
        )
        U[f"{name} (AfterImage, per packet)"] = per_packet
        it = iter(seg_runs)
        per_seg = run_seeds(seeds, lambda s: None, partial(_next_of, it), partial(_next_of, it), y_seg, cls_seg)
        per_seg["train_s"], per_seg["rows_per_s"] = per_packet["train_s"], None
        U[f"{name} (AfterImage, max per segment)"] = per_seg
        _progress(f"  mqtt {name} packets done")
    for name in CLASSIC_FLOW:
        U[f"{name} (segment sequence)"] = run_seeds(
            seeds,
            partial(_fit_registered, name, XS["tr"]),
            lambda d: d.score_many(XS["ca"]),
            lambda d: d.score_many(XS["te"]),
            y_seg,
            cls_seg,
        )
        _progress(f"  mqtt {name} segments done")
    U["cnn (segment sequence)"] = run_seeds(
        seeds,
        lambda s: PacketCNN(seed=s).learn_many(X["tr"]),
        lambda d: d.score_many(X["ca"]),
        lambda d: d.score_many(X["te"]),
        y_seg,
        cls_seg,
    )
    U["gnn (segment summary + graph)"] = run_seeds(
        seeds,
        lambda s: FlowGraphSAGE(seed=s, window=MQTT_WINDOW).learn_many(G["tr"]),
        lambda d: d.score_many(G["ca"]),
        lambda d: d.score_many(G["te"]),
        y_seg,
        cls_seg,
    )
    _progress("  mqtt deep unsupervised done")
    # supervised: benign-5mb-train + attacks' -train captures
    sup = [(c, *_segments(a)) for c, a in sup_parts]
    Xs_tr = pd.concat([seq_tr, *[s[1] for s in sup]], ignore_index=True)
    Gs_tr = pd.concat([g_tr, *[s[2] for s in sup]], ignore_index=True)
    ys_tr = np.concatenate([np.full(len(seq_tr), "benign"), *[np.full(len(s[1]), s[0]) for s in sup]])
    XSs_tr = pd.concat([Xs_tr, flow_summary_frame(Xs_tr)], axis=1)
    res["supervised_rows"] = {"train": len(Xs_tr), "test": len(seq_te)}
    res["supervised_train_classes"] = {
        str(k): int(v) for k, v in zip(*np.unique(ys_tr, return_counts=True), strict=True)
    }
    S = res["supervised"]
    S["random_forest (segment sequence)"] = supervised_runs(
        seeds, lambda s: _rf(s, XSs_tr, ys_tr), lambda c: _rf_out(c, XS["te"]), cls_seg
    )
    S["cnn classify (segment sequence)"] = supervised_runs(
        seeds,
        lambda s: PacketCNN(mode="classify", seed=s).fit(Xs_tr, ys_tr),
        lambda m: (m.predict(X["te"]), m.score_many(X["te"])),
        cls_seg,
    )
    S["gnn classify (segment summary + graph)"] = supervised_runs(
        seeds,
        lambda s: FlowGraphSAGE(mode="classify", seed=s, window=MQTT_WINDOW).fit(Gs_tr, ys_tr),
        lambda m: (m.classes_[m.predict_proba(G["te"]).argmax(axis=1)], m.score_many(G["te"])),
        cls_seg,
    )
    _progress("  mqtt supervised done")
    return res


def flow_summary_frame(seq_frame: pd.DataFrame) -> pd.DataFrame:
    """flow_summary of a flat sequence frame (classic models get the aggregates beside the cells)."""
    n = len(seq_frame.columns) // 9
    arr = seq_frame.to_numpy(dtype=np.float32).reshape(len(seq_frame), n, 9).transpose(0, 2, 1)
    return flow_summary(arr).add_prefix("sum:")


# ----- printing -------------------------------------------------------------------------------------
def _f(v: Any, pct: bool = False) -> str:
    if v is None:
        return "-"
    return f"{100 * v:.1f}%" if pct else (f"{v:.3f}" if abs(v) < 100 else f"{v:,.0f}")


def show(res: dict[str, Any]) -> None:
    print(f"\n== {res['dataset']}  rows={json.dumps(res['rows'])}")
    print(f"   split: {res['protocol']}")
    print(f"   test classes: {res.get('test_classes') or res.get('test_classes_segments')}")
    print(f"   unsupervised, threshold at {100 * TARGET_FPR:g}% FPR on calibration, mean over seeds")
    cols = ("ROC-AUC", 8), ("PR-AUC", 7), ("recall", 7), ("FPR", 6), ("F1", 6), ("train s", 8), ("rows/s", 9)
    hdr = f"   {'model (input)':44s} " + " ".join(f"{c:>{w}s}" for c, w in cols)
    print(hdr)
    for name, m in res["unsupervised"].items():
        print(
            f"   {name:44s} {_f(m['roc_auc']):>8s} {_f(m['pr_auc']):>7s} {_f(m['recall'], True):>7s} "
            f"{_f(m['fpr'], True):>6s} {_f(m['f1']):>6s} {_f(m['train_s']):>8s} {_f(m['rows_per_s']):>9s}"
        )
        print(
            f"   {'':44s} recall by class: " + ", ".join(f"{c} {_f(v, True)}" for c, v in m["recall_by_class"].items())
        )
    if res.get("gnn_alerts"):
        ga = res["gnn_alerts"]
        print(
            f"   gnn alerts (seed {ga['seed']}): {ga['alerts']} host-windows above the training threshold, "
            f"{ga['alerts_on_malicious_windows']} of them hold malicious flows; "
            f"entities {', '.join(ga['entities'][:6])}"
        )
        for a in ga["examples"]:
            print(f"     [{a['severity']}] {a['summary']}")
    if not res["supervised"]:
        return
    print(f"   supervised rows={res.get('supervised_rows')}  (argmax decision; ROC-AUC of P(not benign))")
    for name, m in res["supervised"].items():
        per = ", ".join(f"{c} {_f(v, True)}" for c, v in m["recall_by_class"].items())
        print(
            f"   {name:44s} macro-F1 {_f(m['macro_f1'])} (seeds {_f(min(m['macro_f1_by_seed']))}-"
            f"{_f(max(m['macro_f1_by_seed']))})  ROC-AUC {_f(m['roc_auc'])}  "
            f"train {_f(m['train_s'])} s  recall: {per}"
        )


def run(
    root: Path, seeds: list[int], only: str | None = None, echo: bool = True, quick: bool = False
) -> list[dict[str, Any]]:
    """Run the chosen datasets (all by default); print each table when ``echo``; return the figures.

    ``quick`` shrinks the simulator to 3 days at scale 0.2 (a smoke run); the real datasets are
    always used whole.
    """
    benches: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("iot23", lambda: bench_iot23(root, seeds)),
        ("mqttset", lambda: bench_mqtt(root, seeds)),
        ("simulator", lambda: bench_sim(seeds, days=3, scale=0.2) if quick else bench_sim(seeds)),
    ]
    if only is not None and only not in {name for name, _ in benches}:
        raise InvalidParameterError(f"--only must be iot23, mqttset or simulator, got {only!r}")
    out = []
    for name, bench in benches:
        if only in (None, name):
            out.append(bench())
            if echo:
                show(out[-1])
    if echo:
        print("\ndata: " + ds.CITATIONS["iot23"] + "; " + ds.CITATIONS["mqttset"])
    return out
