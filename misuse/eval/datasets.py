"""The evaluation datasets and their fixed splits (real data under ``MISUSE_DATA_DIR``).

Every loader returns a :class:`Split`: benign *training* rows, held-out benign *calibration* rows
(the threshold is set on their scores, never on test labels) and labelled *test* rows, with the
class of every test row and, where the data has them, its time and entity. Splits are fixed
(time order, no shuffling); seeds change only the models. ``Split.protocol`` documents the split.

Datasets (citations in ``CITATIONS``): IoT-23 scenario 34-1 flows, MQTTset packets, TON_IoT
telemetry per device, N-BaIoT rows, Kitsune's benign Mirai prefix.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from misuse.errors import InvalidParameterError, SchemaError
from misuse.features.afterimage import AfterImage, feature_names, read_tshark_tsv
from misuse.features.flows import iot23_flow_features, read_iot23_flows
from misuse.ingest.pcap_stream import PacketArrays, iter_packet_arrays

CITATIONS = {
    "iot23": "Garcia, Parmisano, Erquiaga: IoT-23, a labeled dataset with malicious and benign IoT network "
    "traffic (Stratosphere Lab, 2020), doi:10.5281/zenodo.4743746",
    "mqttset": "Vaccari et al.: MQTTset, a new dataset for machine learning techniques on MQTT, Sensors 20(22) "
    "2020 (reduced copy l-laura/MQTTset-reduced), CC BY-NC-SA 4.0",
    "toniot": "Moustafa: A new distributed architecture for evaluating AI-based security systems at the edge: "
    "network TON_IoT datasets, Sustainable Cities and Society 72, 2021",
    "nbaiot": "Meidan et al.: N-BaIoT, network-based detection of IoT botnet attacks using deep autoencoders, "
    "IEEE Pervasive Computing 17(3), 2018 (UCI, CC BY 4.0; 4 x 299-row sample)",
    "kitsune": "Mirsky et al.: Kitsune, an ensemble of autoencoders for online network intrusion detection, "
    "NDSS 2018 (UCI Kitsune Mirai capture, benign prefix, CC BY 4.0)",
}
DATASETS = tuple(CITATIONS)


def data_root(root: str | Path | None = None) -> Path:
    """The shared data folder: ``root``, else ``MISUSE_DATA_DIR``, else ``../shared/data``."""
    path = Path(root or os.environ.get("MISUSE_DATA_DIR", "../shared/data"))
    if not path.is_dir():
        raise InvalidParameterError(f"data folder {path} not found (set MISUSE_DATA_DIR or pass --data)")
    return path


@dataclass
class Split:
    """One dataset's fixed split: benign train and calibration rows, labelled test rows."""

    name: str
    train: pd.DataFrame
    calib: pd.DataFrame
    test: pd.DataFrame
    y_test: np.ndarray  # 1 malicious, 0 benign
    cls_test: np.ndarray  # class name per test row ("benign" or the attack class)
    protocol: str
    ts_test: np.ndarray | None = None  # seconds
    entity_test: np.ndarray | None = None
    # supervised view (optional): all classes, train/test by the same fixed rule
    sup_train: pd.DataFrame | None = None
    sup_y_train: np.ndarray | None = None
    sup_test: pd.DataFrame | None = None
    sup_y_test: np.ndarray | None = None
    notes: dict[str, object] = field(default_factory=dict)


def _head_tail(n: int, frac: float) -> tuple[np.ndarray, np.ndarray]:
    cut = round(n * frac)
    return np.arange(cut), np.arange(cut, n)


def _per_class_time_split(cls: np.ndarray, frac: float) -> tuple[np.ndarray, np.ndarray]:
    """First ``frac`` of every class (in file order) to train, the rest to test."""
    tr, te = [], []
    for c in np.unique(cls):
        idx = np.flatnonzero(cls == c)
        a, b = _head_tail(len(idx), frac)
        tr.append(idx[a])
        te.append(idx[b])
    return np.sort(np.concatenate(tr)), np.sort(np.concatenate(te))


# ----- N-BaIoT ---------------------------------------------------------------------------------
NBAIOT_FILES = {
    "benign": "benign_traffic.csv",
    "mirai_udp": "thermostat_udp.csv",
    "gafgyt_udp": "doorbell_udp.csv",
    "gafgyt_scan": "scan.csv",
}


def nbaiot(root: Path, limit: int | None = None) -> Split:
    """N-BaIoT sample rows; checks that the columns are AfterImage's 115 names."""
    frames = []
    for cls, fname in NBAIOT_FILES.items():
        df = pd.read_csv(root / "nbaiot-sample" / fname)
        if list(df.columns) != feature_names():
            raise SchemaError(f"{fname}: columns differ from AfterImage's 115 N-BaIoT names")
        frames.append(df.head(limit).assign(_cls=cls))
    ben = frames[0].drop(columns="_cls")
    tr, rest = _head_tail(len(ben), 0.6)
    cal, te = rest[: len(rest) // 2], rest[len(rest) // 2 :]
    attacks = pd.concat(frames[1:], ignore_index=True)
    test = pd.concat([ben.iloc[te], attacks.drop(columns="_cls")], ignore_index=True)
    cls = np.r_[np.full(len(te), "benign"), attacks["_cls"].to_numpy()]
    allrows = pd.concat(frames, ignore_index=True)
    s_tr, s_te = _per_class_time_split(allrows["_cls"].to_numpy(), 0.7)
    feats = allrows.drop(columns="_cls")
    return Split(
        "nbaiot",
        ben.iloc[tr].reset_index(drop=True),
        ben.iloc[cal].reset_index(drop=True),
        test,
        (cls != "benign").astype(int),
        cls,
        "benign rows in file order: first 60% train, next 20% calibration, last 20% test; all attack rows "
        "in test. Supervised: first 70% of each class train, last 30% test.",
        sup_train=feats.iloc[s_tr],
        sup_y_train=allrows["_cls"].to_numpy()[s_tr],
        sup_test=feats.iloc[s_te],
        sup_y_test=allrows["_cls"].to_numpy()[s_te],
    )


# ----- TON_IoT ---------------------------------------------------------------------------------
def _toniot_frame(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path, encoding="utf-8-sig", skipinitialspace=True)
    df.columns = [c.strip() for c in df.columns]
    when = pd.to_datetime(
        df["date"].str.strip() + " " + df["time"].str.strip(), format="%d-%b-%y %H:%M:%S", errors="coerce"
    )
    df = df.assign(_ts=when.astype("int64") / 1e9).sort_values("_ts", kind="stable").reset_index(drop=True)
    feats = pd.DataFrame(index=df.index)
    for c in df.columns:
        if c in ("date", "time", "label", "type", "_ts"):
            continue
        # one spelling per value: the garage door's attack rows write its phone signal as 0/1, its
        # normal rows as false/true, and the spelling alone would give the label away (ROC-AUC 0.95)
        text = df[c].astype(str).str.strip().str.lower().replace({"false": "0", "true": "1"})
        num = pd.to_numeric(text, errors="coerce")
        if num.notna().mean() > 0.9:
            feats[c] = num
        else:
            for v in sorted(text.unique()):
                feats[f"{c}={v}"] = (text == v).astype(float)
    # No time-of-day features: TON_IoT recorded its attack rows at other hours than its normal rows,
    # so the hour alone separates them (sin of the hour: ROC-AUC 1.000 on every device), a capture
    # artefact that would make any model look perfect. Only the sensor readings are used.
    return feats.assign(_cls=df["type"].astype(str).str.strip().to_numpy(), _ts=df["_ts"].to_numpy())


TONIOT_DEVICES = {
    "fridge": "Fridge",
    "gps_tracker": "GPS_Tracker",
    "garage_door": "Garage_Door",
    "modbus": "Modbus",
    "motion_light": "Motion_Light",
    "thermostat": "Thermostat",
    "weather": "Weather",
}


def toniot(root: Path, device: str, limit: int | None = None) -> Split:
    """One TON_IoT telemetry device, rows sorted by time."""
    if device not in TONIOT_DEVICES:
        raise InvalidParameterError(f"unknown TON_IoT device {device!r}; known: {sorted(TONIOT_DEVICES)}")
    df = _toniot_frame(root / "ton-iot" / f"Train_Test_IoT_{TONIOT_DEVICES[device]}.csv")
    if limit:
        df = df.iloc[np.sort(np.random.default_rng(0).choice(len(df), min(limit, len(df)), replace=False))]
        df = df.reset_index(drop=True)
    cls = df["_cls"].to_numpy()
    feats = df.drop(columns=["_cls", "_ts"])
    s_tr, s_te = _per_class_time_split(cls, 0.7)
    ben_tr = s_tr[cls[s_tr] == "normal"]
    a, b = _head_tail(len(ben_tr), 0.8)
    test_cls = np.where(cls[s_te] == "normal", "benign", cls[s_te])
    return Split(
        f"toniot/{device}",
        feats.iloc[ben_tr[a]].reset_index(drop=True),
        feats.iloc[ben_tr[b]].reset_index(drop=True),
        feats.iloc[s_te].reset_index(drop=True),
        (test_cls != "benign").astype(int),
        test_cls,
        "rows sorted by time; first 70% of every class train, last 30% test (supervised and unsupervised "
        "alike); unsupervised models learn the first 80% of the normal training rows and calibrate on the rest. "
        "Features: the sensor readings only (time of day would leak the label).",
        ts_test=df["_ts"].to_numpy()[s_te],
        sup_train=feats.iloc[s_tr],
        sup_y_train=cls[s_tr],
        sup_test=feats.iloc[s_te],
        sup_y_test=cls[s_te],
    )


# ----- IoT-23 ----------------------------------------------------------------------------------
def iot23(root: Path, window: float = 60.0) -> Split:
    """IoT-23 34-1 flows with per-device window features and the device's own baseline."""
    base = root / "iot23"
    honey = [
        read_iot23_flows(base / "CTU-Honeypot-Capture-4-1" / "bro" / "conn.log.labeled"),
        read_iot23_flows(base / "CTU-Honeypot-Capture-5-1" / "bro" / "conn.log.labeled"),
        read_iot23_flows(base / "CTU-Honeypot-Capture-7-1" / "conn_labeled_subset.csv"),
    ]
    mal = read_iot23_flows(base / "CTU-IoT-Malware-Capture-34-1" / "bro" / "conn.log.labeled")
    t_inf = float(mal.loc[mal["label"] != "benign", "ts"].min())
    pre = mal[mal["ts"] < t_inf]
    post = mal[mal["ts"] >= t_inf]
    train_flows = pd.concat([*honey, pre], ignore_index=True)
    feats_train, baseline = iot23_flow_features(train_flows, window=window, baseline=None)
    feats_test, _ = iot23_flow_features(post, window=window, baseline=baseline)
    # calibration: the last 25% (in time) of every training device's flows
    order = train_flows.groupby("entity")["ts"].rank(pct=True).to_numpy()
    cal = order > 0.75
    cls = post["label"].to_numpy()
    return Split(
        "iot23",
        feats_train[~cal].reset_index(drop=True),
        feats_train[cal].reset_index(drop=True),
        feats_test.reset_index(drop=True),
        (cls != "benign").astype(int),
        cls,
        "train: benign honeypot flows (4-1 Philips Hue, 5-1 Amazon Echo, 7-1 Somfy) and the 34-1 device's flows "
        "before its first malicious flow; calibration: the last 25% (time) of each training device's flows; "
        "test: every 34-1 flow from the first malicious flow on. Per-device 60 s window features, and "
        "each device's own training medians as baseline (dev: features).",
        ts_test=post["ts"].to_numpy(),
        entity_test=post["entity"].to_numpy(),
        notes={"infection_start": t_inf, "pre_infection_flows": len(pre)},
    )


# ----- packet datasets -------------------------------------------------------------------------
MQTT_CLASSES = ("bruteforce", "flood", "malariados", "malformed", "slowite")


def _pcap(path: Path) -> PacketArrays:
    return PacketArrays.concat(list(iter_packet_arrays(path)))


def _shift_after(arr: PacketArrays, prev_end_ns: int) -> PacketArrays:
    arr.ts_ns = arr.ts_ns - int(arr.ts_ns[0]) + prev_end_ns + 1_000_000_000
    return arr


def _most_common(values: np.ndarray) -> int:
    v, c = np.unique(values, return_counts=True)
    return int(v[np.argmax(c)])


def _rewrite_addresses(arr: PacketArrays, broker: int, client: int) -> PacketArrays:
    """Map an attack capture's broker onto the benign broker and every other host onto a benign client.

    MACs are dropped too (the benign capture is Linux cooked and has none)."""
    own_broker = _most_common(np.r_[arr.dst_lo[arr.dst_port == 1883], arr.src_lo[arr.src_port == 1883]])
    for name in ("src_lo", "dst_lo"):
        col = getattr(arr, name)
        setattr(arr, name, np.where(col == own_broker, np.uint64(broker), np.uint64(client)).astype(np.uint64))
    arr.src_mac = np.zeros_like(arr.src_mac)
    arr.dst_mac = np.zeros_like(arr.dst_mac)
    arr.has_mac = np.zeros_like(arr.has_mac)
    return arr


ADDRESS_COLUMNS = ("addr_src", "addr_dst", "port_src", "port_dst", "linktype", "frame_len")


def _packet_frame(ai: AfterImage, arr: PacketArrays, with_addresses: bool) -> pd.DataFrame:
    df = pd.DataFrame(ai.process(arr), columns=ai.feature_names)
    if with_addresses:
        df["addr_src"] = arr.src_lo.astype(np.float64)
        df["addr_dst"] = arr.dst_lo.astype(np.float64)
        df["port_src"] = arr.src_port.astype(np.float64)
        df["port_dst"] = arr.dst_port.astype(np.float64)
        df["linktype"] = arr.linktype.astype(np.float64)
        df["frame_len"] = arr.wire_len.astype(np.float64)
    return df


def mqttset(root: Path, with_addresses: bool = True, limit: int | None = None) -> Split:
    """MQTTset packets through AfterImage, one stream: benign train, benign test, then each attack."""
    base = root / "mqttset"
    train_arr = _pcap(base / "benign-5mb" / "benign-5mb-train.pcap")
    parts = [("benign", _pcap(base / "benign-5mb" / "benign-5mb-test.pcap"))]
    for c in MQTT_CLASSES:
        ext = "pcapng" if c == "bruteforce" else "pcap"
        parts.append((c, _pcap(base / c / f"{c}-test.{ext}")))
    if limit:
        train_arr = train_arr.take(slice(0, limit))
        parts = [(c, a.take(slice(0, limit // 4))) for c, a in parts]
    broker = _most_common(train_arr.dst_lo[train_arr.dst_port == 1883])
    client = _most_common(train_arr.src_lo[train_arr.dst_port == 1883])
    if with_addresses:
        ai = AfterImage()
    else:
        ai = AfterImage(size="ip", use_mac=False)
    tr = _packet_frame(ai, train_arr, with_addresses)
    end = int(train_arr.ts_ns[-1])
    frames, cls, ts = [], [], []
    for c, arr in parts:
        arr = _shift_after(arr, end)
        if not with_addresses and c != "benign":
            arr = _rewrite_addresses(arr, broker, client)
        end = int(arr.ts_ns[-1])
        frames.append(_packet_frame(ai, arr, with_addresses))
        cls.append(np.full(len(arr), c))
        ts.append(arr.ts_ns / 1e9)
    a, b = _head_tail(len(tr), 0.8)
    clsv = np.concatenate(cls)
    return Split(
        "mqttset" if with_addresses else "mqttset/no-address",
        tr.iloc[a].reset_index(drop=True),
        tr.iloc[b].reset_index(drop=True),
        pd.concat(frames, ignore_index=True),
        (clsv != "benign").astype(int),
        clsv,
        "one packet stream through one AfterImage: benign-5mb-train (first 80% train, last 20% calibration), "
        "then benign-5mb-test and each attack's -test file, each shifted to start 1 s after the previous ends. "
        + (
            "Features: AfterImage's 115 plus raw addresses, ports, link type and frame length."
            if with_addresses
            else "Features: AfterImage's 115 only, on link-independent sizes (IP length), streams keyed without "
            "MACs, and every attack capture's broker and hosts rewritten onto the benign broker and busiest "
            "benign client (no address, port or link-type information)."
        ),
        ts_test=np.concatenate(ts),
    )


def kitsune(root: Path, limit: int | None = None) -> Split:
    """Kitsune's benign Mirai prefix (38,362 packets): a false-positive check only."""
    arr = read_tshark_tsv(root / "kitsune-mirai-benign" / "mirai.pcap.first38362pkts.tsv")
    if limit:
        arr = arr.take(slice(0, limit))
    X = pd.DataFrame(AfterImage().process(arr), columns=feature_names())
    n = len(X)
    tr, cal, te = np.arange(int(n * 0.5)), np.arange(int(n * 0.5), int(n * 0.6)), np.arange(int(n * 0.6), n)
    return Split(
        "kitsune",
        X.iloc[tr].reset_index(drop=True),
        X.iloc[cal].reset_index(drop=True),
        X.iloc[te].reset_index(drop=True),
        np.zeros(len(te), dtype=int),
        np.full(len(te), "benign"),
        "packets in order: first 50% train, next 10% calibration, last 40% test (all benign: only the "
        "false-positive rate is measured).",
        ts_test=arr.ts_ns[te] / 1e9,
    )
