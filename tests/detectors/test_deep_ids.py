"""Deep IDS: packet sequences, the 1-D CNN and the flow-graph GNN, on small self-made data."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from misuse.detectors.cnn import PacketCNN
from misuse.detectors.gnn import FlowGraphSAGE
from misuse.detectors.registry import load_detector
from misuse.errors import InvalidParameterError, NotFittedError, SchemaError
from misuse.features.packetseq import (
    CHANNELS,
    column_names,
    flow_summary,
    history_sequences,
    packet_sequences,
    pcap_sequences,
    to_frame,
)
from misuse.ingest.pcap_stream import PacketArrays

SYN, ACK, FIN, PSH = 0x02, 0x10, 0x01, 0x08
A, B, C = 0x0A000001, 0x0A000002, 0x0A000003  # 10.0.0.1 / .2 / .3


def _packets(rows: list[tuple[float, int, int, int, int, int, int, int]]) -> PacketArrays:
    """(ts s, src, dst, sport, dport, proto, flags, payload) per packet, IPv4."""
    n = len(rows)
    cols = list(zip(*rows, strict=True))
    base = {f.name: np.full(n, -1, dtype=np.int64) for f in fields(PacketArrays)}
    base.update(
        index=np.arange(1, n + 1),
        ts_ns=(np.array(cols[0]) * 1e9).astype(np.int64),
        l3=np.full(n, 4),
        src_hi=np.zeros(n, dtype=np.uint64),
        dst_hi=np.zeros(n, dtype=np.uint64),
        src_lo=np.array(cols[1], dtype=np.uint64),
        dst_lo=np.array(cols[2], dtype=np.uint64),
        src_port=np.array(cols[3]),
        dst_port=np.array(cols[4]),
        ip_proto=np.array(cols[5]),
        tcp_flags=np.array(cols[6]),
        payload_len=np.array(cols[7]),
        src_mac=np.zeros(n, dtype=np.uint64),
        dst_mac=np.zeros(n, dtype=np.uint64),
    )
    return PacketArrays(**base)


def _handshake(
    t: float, client: int, sport: int, payload: int
) -> list[tuple[float, int, int, int, int, int, int, int]]:
    return [
        (t, client, B, sport, 1883, 6, SYN, 0),
        (t + 0.01, B, client, 1883, sport, 6, SYN | ACK, 0),
        (t + 0.02, client, B, sport, 1883, 6, ACK, 0),
        (t + 0.03, client, B, sport, 1883, 6, PSH | ACK, payload),
        (t + 0.04, B, client, 1883, sport, 6, ACK, 0),
    ]


# ----- packet sequences -------------------------------------------------------------------------------
def test_flows_are_bidirectional_with_directions_flags_and_padding() -> None:
    rows = [*_handshake(0.0, A, 40000, 100), (0.5, C, B, 5353, 53, 17, -1, 30), *_handshake(1.0, C, 40001, 7)]
    rows.sort()
    fs = packet_sequences(_packets(rows), n_packets=8)
    assert len(fs.flows) == 3
    assert fs.flows["packets"].tolist() == [5, 1, 5]
    first = fs.seq[0]
    ch = {c: i for i, c in enumerate(CHANNELS)}
    assert first[ch["direction"]].tolist() == [1, -1, 1, 1, -1, 0, 0, 0]
    assert first[ch["syn"]].tolist()[:3] == [1, 1, 0]
    assert first[ch["present"]].sum() == 5
    assert first[ch["size"], 3] == pytest.approx(np.log1p(100))
    assert first[ch["iat"], 1] == pytest.approx(np.log1p(10.0), rel=1e-4)
    udp = fs.seq[1]
    assert udp[ch["syn"]].sum() == 0 and udp[ch["present"]].sum() == 1
    assert fs.flows.loc[0, "src"] == "10.0.0.1" and fs.flows.loc[0, "dst"] == "10.0.0.2"
    assert (fs.packet_flow >= 0).all() and fs.packet_pos.max() == 4


def test_idle_timeout_and_window_cut_flows_but_keep_direction() -> None:
    rows = [(t, A, B, 40000, 1883, 6, ACK, 10) if k % 2 == 0 else (t, B, A, 1883, 40000, 6, ACK, 5)
            for k, t in enumerate([0.0, 1.0, 2.0, 3.0, 500.0, 501.0])]  # fmt: skip
    assert len(packet_sequences(_packets(rows), n_packets=4, idle_timeout=120).flows) == 2
    arr = _packets(rows[:4])
    cut = packet_sequences(arr, n_packets=4, window=2.0)  # [0, 2) and [2, 4)
    assert cut.flows["packets"].tolist() == [2, 2]
    # the second segment starts with the initiator's packet again: direction relative to the whole flow
    assert cut.seq[1, CHANNELS.index("direction"), :2].tolist() == [1.0, -1.0]
    assert cut.seq[1, CHANNELS.index("iat"), 0] > 0  # time since the flow's previous packet


def test_bad_parameters_are_refused() -> None:
    arr = _packets(_handshake(0.0, A, 40000, 1))
    with pytest.raises(InvalidParameterError, match="n_packets"):
        packet_sequences(arr, n_packets=0)
    with pytest.raises(InvalidParameterError, match="window"):
        packet_sequences(arr, window=0)


def test_history_sequences_follow_zeek_letters() -> None:
    seq = history_sequences(
        ["ShADadFf", "-", "S"],
        np.array([3.0, 2.0, 1.0]),
        np.array([3.0, 1.0, 0.0]),
        np.array([100.0, 50.0, 0.0]),
        np.array([900.0, np.nan, 0.0]),
        np.array([0.7, 1.0, np.nan]),
        n_packets=10,
    )
    ch = {c: i for i, c in enumerate(CHANNELS)}
    assert seq[0, ch["direction"]].tolist() == [1, -1, 1, 1, -1, -1, 1, -1, 0, 0]
    assert seq[0, ch["syn"], :2].tolist() == [1, 1] and seq[0, ch["ack"], 1] == 1
    assert seq[0, ch["size"], 3] == pytest.approx(np.log1p(100.0))  # one orig data step carries 100 bytes
    assert seq[0, ch["size"], 5] == pytest.approx(np.log1p(900.0))
    assert seq[0, ch["size"], 4] == 0  # a pure acknowledgement carries no data
    assert seq[0, ch["fin"], 6:8].tolist() == [1, 1]
    assert seq[1, ch["present"]].sum() == 3  # "-" falls back to the packet counts
    assert seq[2, ch["present"]].sum() == 1 and np.isfinite(seq).all()


def test_flat_frame_and_summary_shapes() -> None:
    seq = np.random.default_rng(0).normal(size=(5, len(CHANNELS), 4)).astype(np.float32)
    frame = to_frame(seq)
    assert list(frame.columns) == column_names(4) and frame.shape == (5, 4 * len(CHANNELS))
    assert frame.iloc[2]["p01_iat"] == pytest.approx(float(seq[2, CHANNELS.index("iat"), 1]))
    assert len(flow_summary(seq)) == 5
    with pytest.raises(SchemaError):
        to_frame(seq[:, :3])


@pytest.mark.realdata
def test_mqttset_bruteforce_flow_count_matches_provenance(shared_data: Path) -> None:
    fs = pcap_sequences(shared_data / "mqttset" / "bruteforce" / "bruteforce-test.pcapng", n_packets=10)
    assert len(fs.flows) == 382  # PROVENANCE.md: 382 test flows
    assert (fs.packet_flow >= 0).all()


# ----- CNN ------------------------------------------------------------------------------------------
def _sessions(n: int, seed: int, attack: bool) -> pd.DataFrame:
    """Benign: handshake then request/response pairs. Attack: a SYN followed by client-only bursts."""
    rng = np.random.default_rng(seed)
    seq = np.zeros((n, len(CHANNELS), 10), dtype=np.float32)
    ch = {c: i for i, c in enumerate(CHANNELS)}
    for k in range(n):
        m = int(rng.integers(5, 11))
        direction = np.where(np.arange(m) % 2 == 0, 1.0, -1.0)
        if attack:
            direction = np.ones(m)
        seq[k, ch["direction"], :m] = direction
        seq[k, ch["present"], :m] = 1
        seq[k, ch["syn"], 0] = 1
        seq[k, ch["ack"], 1:m] = 0 if attack else 1
        seq[k, ch["size"], 2:m] = rng.normal(6.0 if attack else 4.0, 0.3, m - 2)
        seq[k, ch["iat"], 1:m] = rng.normal(0.1 if attack else 3.0, 0.3, m - 1)
    return to_frame(seq)


def test_cnn_reconstruction_separates_attack_sequences(tmp_path: Path) -> None:
    train = _sessions(400, 0, False)
    test = pd.concat([_sessions(100, 1, False), _sessions(30, 2, True)], ignore_index=True)
    y = np.r_[np.zeros(100), np.ones(30)]
    det = PacketCNN(epochs=8, seed=1).learn_many(train)
    assert det.layout_["packets"] == 10 and len(det.layout_["channels"]) == len(CHANNELS)
    s = det.score_many(test)
    assert roc_auc_score(y, s) > 0.95
    assert (s >= 0).all()
    top = det.explain_one(test.iloc[-1].to_dict())
    assert top[0].feature.startswith("p") and top[0].weight > 0
    det.save(tmp_path / "cnn")
    back = load_detector(tmp_path / "cnn")
    np.testing.assert_allclose(back.score_many(test), s)
    assert not list(tmp_path.rglob("*.pkl")) and not list(tmp_path.rglob("*.pt"))
    again = PacketCNN(epochs=8, seed=1).learn_many(train)
    np.testing.assert_allclose(again.score_many(test), s)


def test_cnn_classifier_learns_labels_and_refuses_unlabelled_training() -> None:
    X = pd.concat([_sessions(200, 3, False), _sessions(60, 4, True)], ignore_index=True)
    y = np.r_[np.full(200, "benign"), np.full(60, "flood")]
    clf = PacketCNN(mode="classify", epochs=10, seed=0).fit(X, y)
    test = pd.concat([_sessions(50, 5, False), _sessions(20, 6, True)], ignore_index=True)
    y_te = np.r_[np.full(50, "benign"), np.full(20, "flood")]
    assert (clf.predict(test) == y_te).mean() > 0.95
    s = clf.score_many(test)
    assert ((s >= 0) & (s <= 1)).all() and roc_auc_score(y_te == "flood", s) > 0.95
    assert clf.explain_one(test.iloc[-1].to_dict())[0].weight > 0
    with pytest.raises(InvalidParameterError, match="labels"):
        PacketCNN(mode="classify").learn_many(X)
    with pytest.raises(SchemaError, match="benign"):
        PacketCNN(mode="classify").fit(X, np.where(y == "benign", "a", "b"))
    with pytest.raises(InvalidParameterError, match="mode"):
        PacketCNN().fit(X, y)
    with pytest.raises(InvalidParameterError, match="kernel"):
        PacketCNN(kernel=4)


# ----- GNN ------------------------------------------------------------------------------------------
def _benign_flows(n: int, t0: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "src": rng.choice([f"dev{i}" for i in range(8)], n),
            "dst": rng.choice(["broker", "ntp"], n),
            "ts": np.sort(rng.uniform(t0, t0 + 1200, n)),
            "bytes": rng.normal(5, 1, n),
            "pkts": rng.normal(3, 0.5, n),
        }
    )


def _scan(t0: float, seed: int) -> pd.DataFrame:
    """One device opening 100 ordinary-looking flows to 100 new hosts within 50 s."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "src": "dev3",
            "dst": [f"10.9.0.{i}" for i in range(100)],
            "ts": np.sort(rng.uniform(t0, t0 + 50, 100)),
            "bytes": rng.normal(5, 1, 100),
            "pkts": rng.normal(3, 0.5, 100),
        }
    )


@pytest.fixture(scope="module")
def graph_case() -> tuple[FlowGraphSAGE, pd.DataFrame, np.ndarray]:
    train = _benign_flows(2000, 0, 0)
    test = pd.concat([_benign_flows(600, 2000, 1), _scan(2500, 2)], ignore_index=True)
    y = np.r_[np.zeros(600), np.ones(100)]
    return FlowGraphSAGE(epochs=100, seed=0).learn_many(train), test, y


def test_gnn_finds_a_structural_anomaly_with_ordinary_flow_features(
    graph_case: tuple[FlowGraphSAGE, pd.DataFrame, np.ndarray],
) -> None:
    gnn, test, y = graph_case
    s = gnn.score_many(test)
    assert s.shape == (len(test),) and np.isfinite(s).all()
    assert roc_auc_score(y, s) > 0.95
    ent = gnn.score_entities(test, s)
    assert ent.iloc[0]["host"] == "dev3" and ent.iloc[0]["flows"] >= 30
    assert int(ent.iloc[0]["top_flow"]) >= 600  # the host's worst flow is a scan flow


def test_gnn_explanation_names_degree_and_neighbouring_flows(
    graph_case: tuple[FlowGraphSAGE, pd.DataFrame, np.ndarray],
) -> None:
    gnn, test, _ = graph_case
    ex = gnn.explain_one(test, len(test) - 1)
    assert ex.features[0].feature.startswith("graph:")
    assert ex.score == pytest.approx(float(gnn.score_many(test)[-1]))
    assert ex.neighbours and all(n["src"] == "dev3" for n in ex.neighbours)
    assert set(ex.to_dict()) == {"score", "features", "neighbours"}


def test_gnn_window_graphs_are_independent_and_scoring_is_pure(
    graph_case: tuple[FlowGraphSAGE, pd.DataFrame, np.ndarray],
) -> None:
    gnn, test, _ = graph_case
    full = gnn.score_many(test)
    win = np.floor(test["ts"].to_numpy() / gnn.window)
    rows = np.flatnonzero(win == win[-1])
    np.testing.assert_allclose(gnn.score_many(test.iloc[rows]), full[rows], rtol=1e-9)
    np.testing.assert_allclose(gnn.score_many(test), full)


def test_gnn_save_load_is_safetensors_and_exact(
    graph_case: tuple[FlowGraphSAGE, pd.DataFrame, np.ndarray], tmp_path: Path
) -> None:
    gnn, test, _ = graph_case
    gnn.save(tmp_path / "g")
    assert sorted(p.name for p in (tmp_path / "g").iterdir()) == ["detector.json", "weights.safetensors"]
    back = FlowGraphSAGE.load(tmp_path / "g")
    np.testing.assert_allclose(back.score_many(test), gnn.score_many(test))
    assert back.get_params() == gnn.get_params() and not gnn.clone().is_fitted


def test_gnn_classifier_and_errors() -> None:
    train = pd.concat([_benign_flows(1500, 0, 3), _scan(600, 4)], ignore_index=True)
    labels = np.r_[np.full(1500, "benign"), np.full(100, "scan")]
    clf = FlowGraphSAGE(mode="classify", epochs=80, seed=0).fit(train, labels)
    test = pd.concat([_benign_flows(500, 3000, 5), _scan(3300, 6)], ignore_index=True)
    y = np.r_[np.zeros(500), np.ones(100)]
    s = clf.score_many(test)
    assert ((s >= 0) & (s <= 1)).all() and roc_auc_score(y, s) > 0.95
    assert clf.predict_proba(test).shape == (600, 2)
    with pytest.raises(NotFittedError):
        FlowGraphSAGE().score_many(test)
    with pytest.raises(SchemaError, match="src"):
        FlowGraphSAGE(epochs=1).learn_many(test.drop(columns="src"))
    with pytest.raises(InvalidParameterError, match="window"):
        FlowGraphSAGE(window=0)
    with pytest.raises(InvalidParameterError, match="bogus"):
        FlowGraphSAGE(bogus=1)
    with pytest.raises(InvalidParameterError, match="labels"):
        FlowGraphSAGE(mode="classify").learn_many(test)


@pytest.mark.realdata
def test_iot23_histories_give_finite_sequences_for_every_flow(shared_data: Path) -> None:
    from misuse.ingest.zeek import ZeekReader

    path = shared_data / "iot23" / "CTU-IoT-Malware-Capture-34-1" / "bro" / "conn.log.labeled"
    ev = pd.concat(list(ZeekReader().batches(path)), ignore_index=True)
    seq = history_sequences(
        ev["cat.history"].fillna("-").to_numpy(),
        *(ev[f"num.{c}"].to_numpy(dtype="float64") for c in ("orig_pkts", "resp_pkts", "orig_bytes", "resp_bytes")),
        ev["num.duration"].to_numpy(dtype="float64"),
        n_packets=12,
    )
    assert seq.shape == (23_145, len(CHANNELS), 12)  # PROVENANCE.md: 23,145 flows
    assert np.isfinite(seq).all()
    assert (seq[:, CHANNELS.index("present")].sum(axis=1) >= 1).mean() > 0.99


@pytest.mark.parametrize(("args", "seeds", "quick"), [([], [0, 1, 2, 3, 4], False), (["--quick"], [0], True)])
def test_eval_deep_quick_runs_one_seed(
    monkeypatch: pytest.MonkeyPatch, args: list[str], seeds: list[int], quick: bool
) -> None:
    from typer.testing import CliRunner

    import misuse.eval.deep
    from misuse.cli.evaluate import app

    asked: dict[str, object] = {}

    def fake_run(root: Path, seeds: list[int], only: str | None, echo: bool, quick: bool) -> list[object]:
        asked.update(seeds=seeds, only=only, quick=quick)
        return []

    monkeypatch.setattr(misuse.eval.deep, "run", fake_run)
    result = CliRunner().invoke(app, ["deep", "--only", "simulator", *args, "--json"])

    assert result.exit_code == 0, result.output
    assert asked == {"seeds": seeds, "only": "simulator", "quick": quick}
