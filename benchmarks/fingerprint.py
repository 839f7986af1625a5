"""Device identification, spoofing and takeover detection on real captures; prints its figures.

Datasets (read-only, ../shared/data or MISUSE_DATA_DIR):

1. iot-on-demand pcaps (7 devices, 2021-03-08..15). Device = the pcap's own device, matched by the
   IP/MAC in devices/devices.csv; type = the name without its number (blink-cam x3, lockly-hub,
   schlage-lock, sifely-hub, ultraloq-hub). Split by calendar day (UTC): windows of 03-08..03-11
   train, 03-12..03-15 test. Window-level accuracy/macro-F1 and per-device identification.
2. IoT-23 flows (Zeek conn.log): Philips Hue 4-1 (192.168.1.132), Amazon Echo 5-1 (192.168.2.3),
   Somfy lock 7-1 (all 130 flows of the subset: its addresses are mostly link-local/multicast),
   and the Raspberry Pi of 34-1 (192.168.1.195, its benign-labelled flows only). 10-minute
   windows, per device the first 60% of its windows (by time) train and the rest test.
   The 4-1 pcap also joins the packet model of (1) as type "hue-bridge" (first 60% of its hours).
3. Spoofing (iot-on-demand): each test window of device A is presented under A's address with
   the traffic of a device B of another type (every other device, same hour). Detection rate =
   share of such windows raising spoofing; false alarms = alerts of any kind on genuine test windows.
4. Open set (iot-on-demand + 4-1 Hue, same split as 1): each type in turn is left out of training;
   its test devices should come out "unknown", the others keep their type. Also the gateway
   192.168.1.1 (in every capture, a type never taught) over the test days, as `misuse devices list`
   without a device table sees it. Shown for the old rule (closed-set vote >= 0.5 and median
   distance <= 3 radii) and the open-set confidence (votes counted only within the type's cut-off).
5. Takeover (IoT-23 34-1): the Pi's fingerprint is enrolled from its benign-labelled flows of
   the first 12 h; over the last 12 h, windows holding Mirai flows (C&C, DDoS, scan) are the
   positives, and the same windows with only their benign-labelled flows stand for the clean
   device (an approximation: the real clean device was not captured).

Run: .venv/bin/python benchmarks/fingerprint.py [--parts ...]   (single-threaded, about a minute)
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from misuse.fingerprint.classifier import DeviceClassifier, identify
from misuse.fingerprint.features import GROUPS, window_features
from misuse.fingerprint.monitor import FingerprintMonitor
from misuse.fingerprint.observe import capture_observations, flow_observations
from misuse.ingest.zeek import ZeekReader

DATA = Path(os.environ.get("MISUSE_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
SEED = 0


def _type(name: str) -> str:
    return name.rsplit("-", 1)[0] if name.rsplit("-", 1)[-1].isdigit() else name


def _macro_f1(y: np.ndarray, p: np.ndarray) -> float:
    f1 = []
    for c in np.unique(y):
        tp = np.sum((p == c) & (y == c))
        prec = tp / max(np.sum(p == c), 1)
        rec = tp / max(np.sum(y == c), 1)
        f1.append(0.0 if tp == 0 else 2 * prec * rec / (prec + rec))
    return float(np.mean(f1))


def on_demand_windows(window: float = 3600.0, groups: tuple[str, ...] = GROUPS) -> pd.DataFrame:
    """Window features of the seven iot-on-demand devices plus the IoT-23 4-1 Hue bridge."""
    devices = pd.read_csv(DATA / "iot-on-demand/devices/devices.csv").dropna(subset=["address", "ether"])
    keys = {str(r.address): str(r.device) for r in devices.itertuples()}
    keys |= {str(r.ether): str(r.device) for r in devices.itertuples()}
    parts = []
    for pcap in sorted((DATA / "iot-on-demand/pcaps").glob("*.pcap")):
        obs = capture_observations(pcap, keys)
        parts.append(obs[obs["device"] == pcap.stem])
    hue = DATA / "iot23/CTU-Honeypot-Capture-4-1/2018-10-25-14-06-32-192.168.1.132.pcap.xz"
    parts.append(capture_observations(hue, {"192.168.1.132": "hue-bridge-01"}))
    f = window_features(pd.concat(parts, ignore_index=True), window, groups=groups)
    f["type"] = f["device"].map(_type)
    return f


def _split_on_demand(f: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    day = pd.to_datetime(f["window_start"], unit="s").dt.strftime("%Y-%m-%d")
    train = np.zeros(len(f), dtype=bool)
    hue = (f["type"] == "hue-bridge").to_numpy()
    train[~hue] = (day[~hue] <= "2021-03-11").to_numpy()
    hs = f.loc[hue, "window_start"]
    train[hue] = (hs <= hs.quantile(0.6)).to_numpy()
    return f[train], f[~train]


def report_identification(name: str, train: pd.DataFrame, test: pd.DataFrame) -> DeviceClassifier:
    clf = DeviceClassifier(seed=SEED).fit(train, train["type"])
    pred = clf.predict(test)
    y = test["type"].to_numpy()
    print(f"\n== {name}: {len(train)} train / {len(test)} test windows, {len(clf.classes_)} types")
    print(f"window accuracy {np.mean(pred == y):.3f}   macro-F1 {_macro_f1(y, pred):.3f}")
    print(pd.crosstab(pd.Series(y, name="true"), pd.Series(pred, name="predicted")).to_string())
    ident = identify(test, clf)
    ident["true"] = ident["device"].map(_type)
    closed = (ident["nearest"] == ident["true"]).sum()
    opened = (ident["type"] == ident["true"]).sum()
    print(
        f"device identification (mean window probability): {closed}/{len(ident)} correct; "
        f"{opened}/{len(ident)} with the open-set rule (confidence within the type's cut-off >= 0.5, "
        "median distance <= 3 radii, else 'unknown')"
    )
    print(ident.to_string(index=False))
    return clf


def _old_rule(windows: pd.DataFrame, clf: DeviceClassifier) -> pd.Series:
    """Per device, the type the closed-set rule gave: mean vote >= 0.5 and median distance <= 3 radii."""
    proba = clf.predict_proba(windows)
    out = {}
    for device, p in proba.groupby(windows["device"].to_numpy()).mean().iterrows():
        best = str(p.idxmax())
        dist = float(np.median(clf.distance_to(windows[windows["device"].to_numpy() == device], best)))
        out[str(device)] = best if p.max() >= 0.5 and dist <= 3.0 else "unknown"
    return pd.Series(out)


def gateway_windows(window: float = 3600.0) -> pd.DataFrame:
    """Windows of the gateway 192.168.1.1 over every iot-on-demand capture (no device table)."""
    parts = []
    for pcap in sorted((DATA / "iot-on-demand/pcaps").glob("*.pcap")):
        obs = capture_observations(pcap, None)
        parts.append(obs[obs["device"] == "192.168.1.1"])
    return window_features(pd.concat(parts, ignore_index=True), window)


def report_open_set(train: pd.DataFrame, test: pd.DataFrame, gateway: pd.DataFrame) -> None:
    print("\n== open set: each type left out of training in turn (iot-on-demand + 4-1, split as above)")
    print("left out      devices  unknown (old rule / open set)  known devices right (old / open set)")
    tot = np.zeros(4, dtype=int)
    n_out = n_known = 0
    for left in sorted(train["type"].unique()):
        tr = train[train["type"] != left]
        clf = DeviceClassifier(seed=SEED).fit(tr, tr["type"])
        ident = identify(test, clf).set_index("device")
        truth = ident.index.map(_type)
        old = _old_rule(test, clf).reindex(ident.index)
        out = truth == left
        counts = [
            int((old[out] == "unknown").sum()),
            int((ident.loc[out, "type"] == "unknown").sum()),
            int((old[~out] == truth[~out]).sum()),
            int((ident.loc[~out, "type"] == truth[~out]).sum()),
        ]
        tot += counts
        n_out += int(out.sum())
        n_known += int((~out).sum())
        shown = ", ".join(f"{d} {t} {c:.2f}" for d, t, c in ident.loc[out, ["type", "confidence"]].itertuples())
        print(
            f"{left:<13} {int(out.sum()):>7}  {counts[0]} / {counts[1]:<27} {counts[2]}/{int((~out).sum())} / "
            f"{counts[3]}/{int((~out).sum())}   ({shown})"
        )
    print(
        f"total: left-out devices called unknown {tot[0]}/{n_out} (old rule) -> {tot[1]}/{n_out} (open set); "
        f"known devices right {tot[2]}/{n_known} -> {tot[3]}/{n_known}"
    )
    clf = DeviceClassifier(seed=SEED).fit(train, train["type"])
    later = gateway[gateway["window_start"] >= pd.Timestamp("2021-03-12", tz="UTC").timestamp()]
    g = identify(later, clf).iloc[0]
    print(
        f"gateway 192.168.1.1 ({g['windows']} test-day windows, a type never taught): old rule "
        f"{_old_rule(later, clf).iloc[0]}; open set {g['type']} (confidence {g['confidence']:.3f}, "
        f"inside {g['inside']:.3f}, nearest {g['nearest']} at {g['distance']:.2f} radii)"
    )


def iot23_windows(window: float = 600.0) -> pd.DataFrame:
    base = DATA / "iot23"
    z = ZeekReader("conn")
    parts = []
    for folder, addr, name in (
        ("CTU-Honeypot-Capture-4-1", "192.168.1.132", "hue-bridge"),
        ("CTU-Honeypot-Capture-5-1", "192.168.2.3", "echo"),
    ):
        parts.append(flow_observations(z.read(base / folder / "bro/conn.log.labeled"), {addr: name}))
    pi = z.read(base / "CTU-IoT-Malware-Capture-34-1/bro/conn.log.labeled")
    parts.append(flow_observations(pi[pi["label"] == "benign"], {"192.168.1.195": "raspberry-pi"}))
    parts.append(_somfy_observations(base / "CTU-Honeypot-Capture-7-1/conn_labeled_subset.csv"))
    f = window_features(pd.concat(parts, ignore_index=True), window, min_units=3)
    f["type"] = f["device"]
    return f


def _somfy_observations(path: Path) -> pd.DataFrame:
    raw = pd.read_csv(path)
    frame = pd.DataFrame(
        {
            "event_id": raw["uid"].astype(str),
            "ts": pd.to_datetime(raw["timestamp"] * 1e9, utc=True),
            "entity": raw["origin_address"].astype(str),
            "peer": raw["response_address"].astype(str),
            "kind": "flow",
            "num.src_port": raw["origin_port"].astype(float),
            "num.dst_port": raw["response_port"].astype(float),
            "num.orig_bytes": pd.to_numeric(raw["orig_bytes"], errors="coerce"),
            "num.resp_bytes": pd.to_numeric(raw["resp_bytes"], errors="coerce"),
            "cat.proto": raw["protocol"].astype(str),
        }
    )
    obs = flow_observations(frame, devices=None)
    obs = obs.drop_duplicates("event_id")  # a flow between two local addresses counts once
    return obs.assign(device="somfy-lock")


def _time_split(f: pd.DataFrame, share: float = 0.6) -> tuple[pd.DataFrame, pd.DataFrame]:
    cut = f.groupby("device")["window_start"].transform(lambda s: s.quantile(share))
    return f[f["window_start"] <= cut], f[f["window_start"] > cut]


def report_spoofing(clf: DeviceClassifier, train: pd.DataFrame, test: pd.DataFrame) -> None:
    mon = FingerprintMonitor(clf)
    mon.enroll_many(train, train["type"])
    genuine = mon.window_alerts(test)
    grouped = mon.check(test)
    kinds = pd.Series([a.detector for a in genuine]).value_counts().to_dict()
    print(f"\n== spoofing on iot-on-demand + 4-1 (test windows, enrolled from train windows, seed {SEED})")
    print(
        f"false alarms on {len(test)} genuine test windows: {len(genuine)} ({len(genuine) / len(test):.3%}) {kinds}; "
        f"as alerts (consecutive windows with the same finding grouped): {len(grouped)}"
    )
    hits = total = n_alerts = 0
    per: dict[str, list[int]] = {}
    for victim in sorted(test["device"].unique()):
        own = test[test["device"] == victim]
        others = test[(test["type"] != own["type"].iloc[0])]
        swapped = others[others["window_start"].isin(own["window_start"])].assign(device=victim)
        if swapped.empty:
            continue
        swapped = swapped.reset_index(drop=True)
        alerts = mon.window_alerts(swapped)
        n_hit = sum(1 for a in alerts if a.detector == "fingerprint.spoofing")
        # grouped per impostor: each other device's windows under the victim's address are one stream
        runs = 0
        for _, impostor in others[others["window_start"].isin(own["window_start"])].groupby("device"):
            runs += sum(1 for a in mon.check(impostor.assign(device=victim)) if a.detector == "fingerprint.spoofing")
        hits += n_hit
        total += len(swapped)
        n_alerts += runs
        per[victim] = [n_hit, len(swapped), runs]
    print(f"spoofed windows detected: {hits}/{total} ({hits / max(total, 1):.3f}), in {n_alerts} grouped alerts")
    for victim, (h, n, r) in per.items():
        print(f"  {victim:<18} {h}/{n} windows, {r} alerts")


def report_takeover(window: float = 600.0) -> None:
    z = ZeekReader("conn")
    pi = z.read(DATA / "iot23/CTU-IoT-Malware-Capture-34-1/bro/conn.log.labeled")
    t0 = pi["ts"].min()
    half = t0 + pd.Timedelta(hours=12)
    dev = {"192.168.1.195": "raspberry-pi"}
    benign = pi[pi["label"] == "benign"]
    train = window_features(flow_observations(benign[benign["ts"] < half], dev), window, min_units=3)
    later = pi[pi["ts"] >= half]
    infected = window_features(flow_observations(later, dev), window, min_units=3)
    malicious_w = set(
        window_features(flow_observations(later[later["label"] != "benign"], dev), window, min_units=1)["window_start"]
    )
    positives = infected[infected["window_start"].isin(malicious_w)].reset_index(drop=True)
    clean = window_features(flow_observations(later[later["label"] == "benign"], dev), window, min_units=3)
    others = iot23_windows(window)
    others = others[others["type"] != "raspberry-pi"]
    tr = pd.concat([train.assign(type="raspberry-pi"), _time_split(others)[0]], ignore_index=True)
    clf = DeviceClassifier(seed=SEED).fit(tr, tr["type"])
    mon = FingerprintMonitor(clf)
    mon.enroll("raspberry-pi", "raspberry-pi", train)
    pos_alerts = mon.window_alerts(positives, window)
    neg_alerts = mon.window_alerts(clean, window)
    det = {a.window_start.timestamp() for a in pos_alerts}
    print(
        f"\n== takeover on IoT-23 34-1 (Mirai), {window:.0f}s windows; fingerprint from benign flows of the first 12 h"
    )
    print(
        f"infected windows flagged: {len(det)}/{len(positives)} ({len(det) / max(len(positives), 1):.3f})  "
        f"by finding: {pd.Series([a.detector for a in pos_alerts]).value_counts().to_dict()}"
    )
    print(
        f"benign-only versions of the last 12 h flagged: {len(neg_alerts)}/{len(clean)}; "
        f"infected windows as grouped alerts: {len(mon.check(positives, window))}"
    )
    if pos_alerts:
        a = pos_alerts[0]
        print(f"example: {a.summary}\n  {a.contributions[:3]}")


PARTS = ("identify", "dns", "flows", "open-set", "spoofing", "takeover")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog=__doc__.split("\n", 1)[1] + f"\nData folder: {DATA} (set MISUSE_DATA_DIR to change it).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--parts",
        nargs="+",
        choices=PARTS,
        default=list(PARTS),
        help="which figures to compute (default: all; open-set and spoofing build on identify, so they run it too)",
    )
    args = ap.parse_args(argv)
    parts = set(args.parts)
    start = time.time()
    print(f"data: {DATA}  seed: {SEED}")
    if parts & {"identify", "open-set", "spoofing"}:
        f = on_demand_windows()
        train, test = _split_on_demand(f)
        clf = report_identification(
            "iot-on-demand pcaps + IoT-23 4-1 pcap, 1 h windows, train <= 03-11 / test >= 03-12", train, test
        )
    if "dns" in parts:
        with_dns = on_demand_windows(groups=(*GROUPS, "dns"))
        report_identification(
            "the same with the names the devices look up (feature group 'dns', opt-in)", *_split_on_demand(with_dns)
        )
    if "flows" in parts:
        flows = iot23_windows()
        ftr, fte = _time_split(flows)
        report_identification(
            "IoT-23 flows (4-1, 5-1, 7-1, 34-1 benign), 10 min windows, first 60% / last 40%", ftr, fte
        )
    if "open-set" in parts:
        report_open_set(train, test, gateway_windows())
    if "spoofing" in parts:
        report_spoofing(clf, train, test)
    if "takeover" in parts:
        report_takeover()
    print(f"\ntotal {time.time() - start:.1f}s")


if __name__ == "__main__":
    main()
