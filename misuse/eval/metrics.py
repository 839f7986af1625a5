"""Detection-quality metrics: over scored items (windows, flows, blocks) and over incidents.

Thresholds are never chosen here: ``alarms`` come from a threshold fitted on training data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from misuse.alerts.types import MisuseType

# an alert of a member type counts as the right type for an incident of the family
TYPE_FAMILIES: dict[str, set[str]] = {
    MisuseType.BOTNET: {MisuseType.BOTNET, MisuseType.SCANNING, MisuseType.DOS},
    MisuseType.BRUTE_FORCE: {MisuseType.BRUTE_FORCE, MisuseType.UNAUTHORIZED_ACCESS},
}


def tpr_at_fpr(y: np.ndarray, scores: np.ndarray, fpr: float) -> float:
    """True-positive rate at the largest ROC point whose false-positive rate is <= ``fpr``.

    This reads the test ROC and so is a *ranking* figure, reported beside (never instead of) the
    operating point a training-set threshold gives.
    """
    f, t, _ = roc_curve(y, scores)
    ok = f <= fpr
    return float(t[ok].max()) if ok.any() else 0.0


def binary_metrics(y: Sequence[int] | np.ndarray, scores: np.ndarray, alarms: np.ndarray) -> dict[str, Any]:
    """ROC-AUC, PR-AUC, TPR at 0.1% and 1% FPR, and precision/recall/F1/FPR of ``alarms``.

    Parameters
    ----------
    y:
        1 for malicious, 0 for benign.
    scores:
        Anomaly scores (higher = more anomalous).
    alarms:
        Decisions of a threshold set on training data.
    """
    y = np.asarray(y, dtype=int)
    alarms = np.asarray(alarms, dtype=bool)
    pos, neg = int(y.sum()), int((1 - y).sum())
    tp = int((alarms & (y == 1)).sum())
    fp = int((alarms & (y == 0)).sum())
    out: dict[str, Any] = {"n": len(y), "positives": pos, "negatives": neg, "tp": tp, "fp": fp}
    both = pos > 0 and neg > 0
    out["roc_auc"] = float(roc_auc_score(y, scores)) if both else None
    out["pr_auc"] = float(average_precision_score(y, scores)) if both else None
    out["tpr_at_0.1%fpr"] = tpr_at_fpr(y, scores, 0.001) if both else None
    out["tpr_at_1%fpr"] = tpr_at_fpr(y, scores, 0.01) if both else None
    out["recall"] = tp / pos if pos else None
    out["fpr"] = fp / neg if neg else None
    out["precision"] = tp / (tp + fp) if tp + fp else None
    p, r = out["precision"], out["recall"]
    out["f1"] = 2 * p * r / (p + r) if p and r else 0.0
    return out


def _entities(value: object) -> set[str]:
    return {e.strip() for e in str(value).replace(";", ",").split(",") if e.strip()}


def incident_metrics(alerts: pd.DataFrame, truth: pd.DataFrame) -> dict[str, Any]:
    """Match alerts to ground-truth incidents by entity and time overlap.

    Parameters
    ----------
    alerts:
        Columns ``entity, window_start, window_end, misuse_type``.
    truth:
        Columns ``attack_id, type, entities`` (comma-separated) and ``start, end``.

    Returns
    -------
    dict
        ``precision`` (alerts that overlap an incident), ``recall`` (incidents with at least one
        alert), ``type_accuracy`` (detected incidents whose first alert has the right type family),
        per-incident rows with the detection delay, and alert counts by type.
    """
    if alerts.empty:
        alerts = pd.DataFrame(columns=["entity", "window_start", "window_end", "misuse_type"])
    truth = truth.copy()
    truth["start"] = pd.to_datetime(truth["start"], utc=True)
    truth["end"] = pd.to_datetime(truth["end"], utc=True)
    matched_alert = np.zeros(len(alerts), dtype=bool)
    rows = []
    for _, inc in truth.iterrows():
        ents = _entities(inc["entities"])
        if len(alerts):
            hit = (
                alerts["entity"].isin(ents)
                & (pd.to_datetime(alerts["window_end"], utc=True) > inc["start"])
                & (pd.to_datetime(alerts["window_start"], utc=True) <= inc["end"])
            ).to_numpy()
        else:
            hit = np.zeros(0, dtype=bool)
        matched_alert |= hit
        first = alerts[hit].sort_values("window_start").head(1)
        detected = bool(hit.any())
        fam = TYPE_FAMILIES.get(str(inc["type"]), {str(inc["type"])})
        rows.append(
            {
                "attack_id": inc["attack_id"],
                "type": inc["type"],
                "detected": detected,
                "alerts": int(hit.sum()),
                "first_alert_type": first["misuse_type"].iloc[0] if detected else None,
                "type_correct": bool(detected and first["misuse_type"].iloc[0] in fam),
                "delay_s": (
                    max(
                        0.0,
                        (pd.to_datetime(first["window_start"].iloc[0], utc=True) - inc["start"]).total_seconds(),
                    )
                    if detected
                    else None
                ),
            }
        )
    per = pd.DataFrame(rows)
    n_alerts = len(alerts)
    detected = per[per["detected"]] if len(per) else per
    return {
        "alerts": n_alerts,
        "alerts_on_incidents": int(matched_alert.sum()),
        "precision": float(matched_alert.mean()) if n_alerts else None,
        "recall": float(per["detected"].mean()) if len(per) else None,
        "type_accuracy": float(detected["type_correct"].mean()) if len(detected) else None,
        "incidents": per.to_dict("records"),
        "alerts_by_type": dict(alerts["misuse_type"].value_counts()) if n_alerts else {},
    }


def recall_by_type(result: Mapping[str, Any]) -> dict[str, str]:
    """'detected/total' per incident type, for printing."""
    per = pd.DataFrame(result["incidents"])
    if per.empty:
        return {}
    g = per.groupby("type")["detected"]
    return {str(t): f"{int(s)}/{int(c)}" for t, s, c in zip(g.sum().index, g.sum(), g.count(), strict=True)}
