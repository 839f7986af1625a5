"""One evaluation harness for every dataset: train on benign, threshold on held-out benign, test.

For each detector and seed: learn the training rows, fit an :class:`FPRThreshold` on the scores of
the calibration rows (training data only), score the test rows and report

- ROC-AUC, PR-AUC, TPR at 0.1% and 1% FPR (ranking figures read off the test ROC);
- recall, FPR, precision and F1 *at the training-set threshold* (the operating point that counts);
- per-class recall at that threshold and per-class ROC-AUC (benign test rows vs that class);
- the confusion matrix ``[[tn, fp], [fn, tp]]``;
- detection delay: per class, seconds from the class's first test row to its first alarm (and,
  when rows carry entities, from the first malicious row to the first alarm on that entity);
- optionally the same figures on de-duplicated test rows (identical feature vector and label kept
  once), so that thousands of identical flood rows do not decide the result.

Figures are averaged over seeds (``mean``, ``std``); each seed's figures are kept too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from misuse.detectors.registry import make_detector
from misuse.detectors.supervised import class_report, make_classifier
from misuse.detectors.threshold import FPRThreshold
from misuse.eval.datasets import Split
from misuse.eval.metrics import binary_metrics

DEFAULT_SEEDS = (0, 1, 2, 3, 4)
SUPERVISED = ("random_forest", "decision_tree", "linear_svm", "naive_bayes")


def dedup_mask(test: pd.DataFrame, y: np.ndarray) -> np.ndarray:
    """True for the first occurrence of every distinct (feature vector, label) test row."""
    key = test.round(9).assign(_y=y)
    return np.asarray(~key.duplicated().to_numpy())


def _detection_delay(split: Split, alarms: np.ndarray) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    if split.ts_test is None:
        return out
    ts = np.asarray(split.ts_test, dtype="float64")
    for c in np.unique(split.cls_test[split.y_test == 1]):
        rows = split.cls_test == c
        hit = rows & alarms
        out[str(c)] = float(ts[hit].min() - ts[rows].min()) if hit.any() else None
    if split.entity_test is not None and (split.y_test == 1).any():
        mal = split.y_test == 1
        first = float(ts[mal].min())
        ent = split.entity_test
        for e in np.unique(ent[mal]):
            on = (ent == e) & alarms & (ts >= first)
            out[f"entity:{e}"] = float(ts[on].min() - first) if on.any() else None
    return out


def _point(split: Split, scores: np.ndarray, alarms: np.ndarray, rows: np.ndarray | None = None) -> dict[str, Any]:
    y, cls = split.y_test, split.cls_test
    if rows is not None:
        y, cls, scores, alarms = y[rows], cls[rows], scores[rows], alarms[rows]
    m = binary_metrics(y, scores, alarms)
    m["confusion"] = [[int(((y == 0) & ~alarms).sum()), m["fp"]], [int(((y == 1) & ~alarms).sum()), m["tp"]]]
    per_recall: dict[str, float] = {}
    per_auc: dict[str, float | None] = {}
    benign = cls == "benign"
    for c in np.unique(cls[y == 1]):
        sel = cls == c
        per_recall[str(c)] = float(alarms[sel].mean())
        both = sel | benign
        per_auc[str(c)] = float(roc_auc_score(sel[both], scores[both])) if benign.any() else None
    m["recall_by_class"] = per_recall
    m["roc_auc_by_class"] = per_auc
    return m


def evaluate_detector(
    split: Split,
    name: str,
    seed: int,
    target_fpr: float = 0.01,
    dedup: bool = False,
    params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One detector, one seed: the operating point at a training-set threshold and ranking figures."""
    det = make_detector(name, seed=seed, **(params or {}))
    det.learn_many(split.train)
    thr = FPRThreshold(target_fpr).fit(det.score_many(split.calib))
    scores = det.score_many(split.test)
    alarms = np.asarray(thr.is_alarm(scores))
    out = _point(split, scores, alarms)
    out["threshold"] = thr.threshold_
    out["calibration_fpr"] = float(np.mean(thr.is_alarm(det.score_many(split.calib))))
    out["delay_s"] = _detection_delay(split, alarms)
    if dedup:
        out["dedup"] = _point(split, scores, alarms, dedup_mask(split.test, split.y_test))
    return out


def _mean(values: list[Any]) -> Any:
    """Mean of numbers, recursively through dicts; None when any seed gave None."""
    first = values[0]
    if isinstance(first, dict):
        return {k: _mean([v.get(k) for v in values]) for k in first}
    if isinstance(first, bool) or not isinstance(first, int | float) or any(v is None for v in values):
        return None if any(v is None for v in values) else first
    return float(np.mean(values))


def _std(values: list[Any]) -> Any:
    first = values[0]
    if isinstance(first, dict):
        return {k: _std([v.get(k) for v in values]) for k in first}
    if isinstance(first, bool) or not isinstance(first, int | float) or any(v is None for v in values):
        return None
    return float(np.std(values))


def evaluate(
    split: Split,
    detectors: Sequence[str],
    seeds: Sequence[int] = DEFAULT_SEEDS,
    target_fpr: float = 0.01,
    dedup: bool = False,
    supervised: Sequence[str] = (),
    params: dict[str, dict[str, Any]] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Evaluate detectors (unsupervised) and classifiers (supervised) on a split over seeds."""
    res: dict[str, Any] = {
        "dataset": split.name,
        "protocol": split.protocol,
        "seeds": list(seeds),
        "target_fpr": target_fpr,
        "rows": {"train": len(split.train), "calibration": len(split.calib), "test": len(split.test)},
        "test_classes": {str(k): int(v) for k, v in zip(*np.unique(split.cls_test, return_counts=True), strict=True)},
        "notes": split.notes,
        "unsupervised": {},
        "supervised": {},
    }
    if dedup:
        res["rows"]["test_dedup"] = int(dedup_mask(split.test, split.y_test).sum())
    for name in detectors:
        runs = []
        for s in seeds:
            if progress:
                progress(f"{split.name}: {name} seed {s}")
            runs.append(evaluate_detector(split, name, s, target_fpr, dedup, (params or {}).get(name)))
        res["unsupervised"][name] = {"mean": _mean(runs), "std": _std(runs), "per_seed": runs}
    sup = (split.sup_train, split.sup_y_train, split.sup_test, split.sup_y_test)
    if supervised and all(v is not None for v in sup):
        X_tr, y_tr, X_te, y_te = sup
        for kind in supervised:
            reps = []
            for s in seeds:
                if progress:
                    progress(f"{split.name}: {kind} seed {s}")
                clf = make_classifier(kind, seed=s).fit(X_tr, y_tr)  # type: ignore[arg-type]
                reps.append(class_report(y_te, clf.predict(X_te)))  # type: ignore[arg-type]
            recall = [{c: r["per_class"][c]["recall"] for c in r["per_class"]} for r in reps]
            res["supervised"][kind] = {
                "mean": {
                    "macro_f1": _mean([r["macro_f1"] for r in reps]),
                    "accuracy": _mean([r["accuracy"] for r in reps]),
                    "recall_by_class": _mean(recall),
                },
                "std": {"macro_f1": _std([r["macro_f1"] for r in reps])},
                "labels": reps[0]["labels"],
                "confusion_seed0": reps[0]["confusion"],
            }
    return res
