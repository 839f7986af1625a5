"""Every rule of the built-in pack, on data made here (real-data runs are in test_realdata.py)."""

from __future__ import annotations

import ast
import re
from collections import Counter
from pathlib import Path
from typing import Any

import dpkt
import pytest

from misuse.events import Event
from misuse.ingest.pcap import PcapReader
from misuse.rules.derive import Enricher
from misuse.rules.engine import RuleEngine
from misuse.rules.model import Rule
from misuse.rules.mqtt import annotate_mqtt

REPO = Path(__file__).resolve().parents[2]


def _fired(pack: list[Rule], frame: Any, enrich: bool = False) -> Counter[str]:
    by_id = {r.id: r.title for r in pack}
    alerts = RuleEngine(pack, enricher=Enricher() if enrich else None).run(frame)
    return Counter(by_id[a.detector.removeprefix("rule:")] for a in alerts)


def test_every_pack_rule_has_a_description_references_and_a_test_that_names_it(pack: list[Rule]) -> None:
    # prepare: the test functions of the files the rules name, with their source text
    sources: dict[Path, dict[str, str]] = {}
    for rule in pack:
        # execute
        tests = str(rule.raw.get("tests") or "")
        # assert: every rule, feeders included, says what it finds, where that comes from (public
        # sources), and has a test that exists and names the rule (title, name or id)
        assert rule.description, rule.title
        assert rule.references, rule.title
        assert all(re.match(r"^https://\S+$", ref) for ref in rule.references), (rule.title, rule.references)
        assert tests, rule.title
        file, _, func = tests.partition("::")
        path = REPO / file
        if path not in sources:
            text = path.read_text()
            lines = text.splitlines()
            sources[path] = {  # each test function with its decorators (parametrize lists)
                n.name: "\n".join(lines[min([n.lineno, *(d.lineno for d in n.decorator_list)]) - 1 : n.end_lineno])
                for n in ast.walk(ast.parse(text))
                if isinstance(n, ast.FunctionDef)
            }
        assert func in sources[path], f"{rule.title}: {tests} does not exist"
        named = {rule.title, rule.id} | ({rule.name} if rule.name else set())
        assert any(x in sources[path][func] for x in named), f"{rule.title}: {tests} does not name the rule"


def test_telnet_scan_across_hosts(pack: list[Rule], mk: Any) -> None:
    # prepare: one bot tries telnet on 25 hosts within 25 s; a normal device on 3
    events = [mk.flow(float(i), "10.0.0.9", f"203.0.113.{i}", 23, "S0") for i in range(25)]
    events += [mk.flow(float(i), "10.0.0.2", f"198.51.100.{i}", 23, "S0") for i in range(3)]
    # execute
    fired = _fired(pack, mk.frame(events))
    # assert
    assert fired["Mirai/Bashlite-style telnet scanning across many hosts"] == 1


def test_mirai_sequence_fingerprint(pack: list[Rule], mk: Any, tmp_path: Path) -> None:
    # prepare: Mirai SYNs (seq == destination address) and ordinary SYNs with random seq
    pkts = []
    for i in range(30):
        dst = f"203.0.113.{i + 1}"
        seq = int.from_bytes(mk.ip_bytes(dst), "big")
        pkts.append((float(i), mk.tcp_packet("10.0.0.9", dst, 40000 + i, 23, dpkt.tcp.TH_SYN, seq=seq)))
    pkts += [
        (40.0 + i, mk.tcp_packet("10.0.0.5", "198.51.100.7", 50000 + i, 23, dpkt.tcp.TH_SYN, seq=12345))
        for i in range(5)
    ]
    frame = PcapReader().read(mk.write_pcap(tmp_path / "mirai.pcap", pkts))
    # execute
    alerts = RuleEngine(pack).run(frame)
    # assert: the fingerprint names only the bot, and the scan correlation also fires
    fp = [a for a in alerts if a.detector == "rule:c043c346-26ba-418f-a489-1b4344c9ddb9"]
    assert {a.entity for a in fp} == {"10.0.0.9"}
    assert sum(a.score for a in fp) == 30
    assert any(a.misuse_type == "botnet" and "scanning across many hosts" in a.summary for a in alerts)


def test_horizontal_scan(pack: list[Rule], mk: Any) -> None:
    # prepare: 12 unanswered attempts on port 63798, different hosts, within a minute
    events = [mk.flow(float(i), "10.0.0.9", f"203.0.113.{i}", 63798, "S0") for i in range(12)]
    # execute
    fired = _fired(pack, mk.frame(events))
    # assert
    assert fired["Horizontal port scan"] == 1


def test_network_sweep_and_vertical_scan(pack: list[Rule], mk: Any) -> None:
    # prepare: a sweep that changes port with every address (no port twice: the horizontal rule cannot
    # group it), a vertical scan of one host, and a device with a few unanswered lookups (no alert)
    sweep = [mk.flow(i * 0.2, "10.0.0.9", f"198.51.{i // 250}.{i % 250}", 20 + i, "S0") for i in range(200)]
    vertical = [mk.flow(i * 0.5, "10.0.0.7", "192.0.2.10", 1 + i, "REJ") for i in range(30)]
    quiet = [mk.flow(i * 10.0, "10.0.0.3", f"192.0.2.{i}", 53, "S0") for i in range(5)]
    # execute
    fired = _fired(pack, mk.frame(sweep + vertical + quiet))
    alerts = RuleEngine(pack).run(mk.frame(sweep + vertical + quiet))
    # assert
    assert fired["Network sweep (unanswered attempts to many hosts, any port)"] >= 1
    assert fired["Vertical port scan"] >= 1
    assert "Horizontal port scan" not in fired
    sweeps = {a.entity for a in alerts if a.summary.startswith("Network sweep")}
    verticals = {a.entity for a in alerts if a.summary.startswith("Vertical port scan")}
    assert sweeps == {"10.0.0.9"} and verticals == {"10.0.0.7"}


def test_connection_flood(pack: list[Rule], mk: Any) -> None:
    # prepare: 150 flows to one web server in 3 s, and a normal rate elsewhere
    events = [mk.flow(i * 0.02, "10.0.0.9", "198.51.100.80", 80) for i in range(150)]
    events += [mk.flow(i * 5.0, "10.0.0.3", "198.51.100.80", 80) for i in range(20)]
    # execute
    alerts = RuleEngine(pack).run(mk.frame(events))
    # assert
    flood = [a for a in alerts if a.summary.startswith("Connection flood to one peer:")]
    assert [a.entity for a in flood] == ["10.0.0.9"]


def test_beaconing_periodic_rare_peer(pack: list[Rule], mk: Any) -> None:
    # prepare: a bot polls its C&C every 60 s (+-2 s); a person browses at random times
    jitter = [0, 2, -1, 1, -2, 0, 1, -1, 2, 0]
    events = [mk.flow(60.0 * i + jitter[i], "10.0.0.9", "185.244.25.235", 6667) for i in range(10)]
    events += [mk.flow(t, "10.0.0.3", "93.184.216.34", 443) for t in (3, 10, 200, 215, 900, 905, 2000, 2600, 3000)]
    # execute
    alerts = RuleEngine(pack, enricher=Enricher()).run(mk.frame(events))
    # assert
    beacons = [a for a in alerts if a.summary.startswith("C&C beaconing (periodic contact with a rare peer):")]
    assert {a.entity for a in beacons} == {"10.0.0.9"}


def test_bruteforce_then_success(pack: list[Rule], mk: Any) -> None:
    # prepare: 12 failures for root from one address, then a success; a user who mistypes once
    events = [mk.auth(float(i), "root", "203.0.113.5", "login.failed") for i in range(12)]
    events.append(mk.auth(100.0, "root", "203.0.113.5", "login.success"))
    events += [mk.auth(5.0, "alice", "10.0.0.4", "login.failed"), mk.auth(9.0, "alice", "10.0.0.4", "login.success")]
    # execute
    fired = _fired(pack, mk.frame(events))
    # assert
    assert fired["SSH/telnet brute force from one source"] == 1
    assert fired["Successful login after brute force"] == 1
    assert sum(fired.values()) == 2


def test_credential_stuffing(pack: list[Rule], mk: Any) -> None:
    # prepare: six accounts tried once each from one address
    events = [mk.auth(float(i), user, "203.0.113.6", "login.failed") for i, user in enumerate("abcdef")]
    # execute
    fired = _fired(pack, mk.frame(events))
    # assert
    assert fired["Credential stuffing (many accounts from one source)"] == 1


def _mqtt(body_type: int, body: bytes, flags: int = 0) -> bytes:
    return bytes([(body_type << 4) | flags, len(body)]) + body


def _connect(keepalive: int, name: bytes = b"MQTT", cflags: int = 2) -> bytes:
    var = len(name).to_bytes(2, "big") + name + bytes([4, cflags]) + keepalive.to_bytes(2, "big")
    return _mqtt(1, var + b"\x00\x02id")


def _publish(payload_bytes: int) -> bytes:
    """A PUBLISH to topic a/b whose remaining length may need several bytes."""
    body = b"\x00\x03a/b" + b"x" * payload_bytes
    n, length = len(body), b""
    while True:
        n, digit = divmod(n, 128)
        length += bytes([digit | (0x80 if n else 0)])
        if not n:
            return bytes([0x30]) + length + body


def test_mqtt_rules(pack: list[Rule], mk: Any, tmp_path: Path) -> None:
    # prepare: refused CONNECTs, a PUBLISH flood (rate), large PUBLISHes at a low rate (volume),
    # SlowITe CONNECTs and a malformed CONNECT
    broker, pkts, t = "192.168.1.7", [], 0.0
    for i in range(12):  # brute force: broker refuses with rc 5
        pkts.append((t, mk.tcp_packet("10.16.0.9", broker, 40000 + i, 1883, 0x18, payload=_connect(60))))
        pkts.append(
            (t + 0.01, mk.tcp_packet(broker, "10.16.0.9", 1883, 40000 + i, 0x18, payload=_mqtt(2, b"\x00\x05")))
        )
        t += 1.0
    for i in range(120):  # publish flood
        pub = _mqtt(3, b"\x00\x03a/b" + b"x" * 100)
        pkts.append((t + i * 0.01, mk.tcp_packet("10.16.0.8", broker, 41000, 1883, 0x18, payload=pub)))
    for i in range(15):  # volume: 15 x 8 kB in 30 s, far below the rate rule's 100 in 10 s
        pkts.append((t + 2.0 * i, mk.tcp_packet("10.16.0.5", broker, 41500, 1883, 0x18, payload=_publish(8000))))
    for i in range(25):  # SlowITe
        pkts.append((t + i * 0.1, mk.tcp_packet("10.16.0.7", broker, 42000 + i, 1883, 0x18, payload=_connect(65535))))
    pkts.append((t + 5, mk.tcp_packet("10.16.0.6", broker, 43000, 1883, 0x18, payload=_connect(60, b"MQTX", 3))))
    pkts.append((t + 6, mk.tcp_packet("192.168.0.5", broker, 44000, 1883, 0x18, payload=_connect(60))))  # benign
    path = mk.write_pcap(tmp_path / "mqtt.pcap", pkts)
    frame = annotate_mqtt(PcapReader().read(path), path)
    # execute
    alerts = RuleEngine(pack).run(frame)
    # assert: each attack is named on its attacker, the benign client on nothing
    got = {(a.summary.split(":")[0], a.entity) for a in alerts}
    assert ("MQTT brute force", "10.16.0.9") in got
    assert ("MQTT publish flood (rate)", "10.16.0.8") in got
    assert ("MQTT publish flood (volume)", "10.16.0.5") in got
    assert ("MQTT publish flood (rate)", "10.16.0.5") not in got
    assert ("MQTT SlowITe (many long keep-alive connections)", "10.16.0.7") in got
    assert ("Malformed MQTT packet", "10.16.0.6") in got
    assert all(a.entity != "192.168.0.5" for a in alerts)


def _login(mk: Any, t: float, client: str, port: int, user: str, rc: int, v5: bool = False) -> list[Any]:
    """A CONNECT with a user name and password from ``client:port``, and the broker's CONNACK."""
    broker = "192.168.1.7"
    var = b"\x00\x04MQTT" + bytes([5 if v5 else 4, 0xC2, 0, 60]) + (b"\x00" if v5 else b"")
    body = b"\x00\x04dev1" + len(user).to_bytes(2, "big") + user.encode() + b"\x00\x06secret"
    ack = bytes([0, rc]) + (b"\x00" if v5 else b"")
    return [
        (t, mk.tcp_packet(client, broker, port, 1883, 0x18, payload=_mqtt(1, var + body))),
        (t + 0.01, mk.tcp_packet(broker, client, 1883, port, 0x18, payload=_mqtt(2, ack))),
    ]


def _mqtt_titles(pack: list[Rule], mk: Any, path: Path, pkts: list[tuple[float, bytes]]) -> set[tuple[str, str]]:
    pcap = mk.write_pcap(path, sorted(pkts))
    frame = annotate_mqtt(PcapReader().read(pcap), pcap)
    by_id = {r.id: r.title for r in pack}
    return {(by_id[a.detector.removeprefix("rule:")], a.entity) for a in RuleEngine(pack).run(frame)}


def test_mqtt_credential_stuffing(pack: list[Rule], mk: Any, tmp_path: Path) -> None:
    # prepare: one client tries six accounts once each (two refusals in MQTT 5's reason code);
    # another retries one account six times; a third logs in at once
    pkts = []
    for i, user in enumerate(["admin", "root", "guest", "mqtt", "pi", "iot"]):
        pkts += _login(mk, 10.0 * i, "10.16.0.20", 41000 + i, user, 134 if i < 2 else 4, v5=i < 2)
    for i in range(6):
        pkts += _login(mk, 10.0 * i + 1, "10.16.0.21", 42000 + i, "alice", 4)
    pkts += _login(mk, 5.0, "192.168.0.5", 43000, "sensor", 0)
    # execute
    got = _mqtt_titles(pack, mk, tmp_path / "stuffing.pcap", pkts)
    # assert: stuffing on the first client only; six refusals are no brute force yet
    assert got == {("MQTT credential stuffing (many user names from one client)", "10.16.0.20")}


def test_mqtt_login_after_brute_force(pack: list[Rule], mk: Any, tmp_path: Path) -> None:
    # prepare: 12 refused guesses then an accepted login; a client that mistypes twice; a client
    # accepted at once
    pkts = []
    for i in range(12):
        pkts += _login(mk, 2.0 * i, "10.16.0.30", 44000 + i, "admin", 5)
    pkts += _login(mk, 120.0, "10.16.0.30", 44100, "admin", 0)
    pkts += _login(mk, 3.0, "192.168.0.6", 45000, "bob", 4) + _login(mk, 9.0, "192.168.0.6", 45001, "bob", 4)
    pkts += _login(mk, 15.0, "192.168.0.6", 45002, "bob", 0)
    pkts += _login(mk, 20.0, "192.168.0.7", 46000, "carol", 0)
    # execute
    got = _mqtt_titles(pack, mk, tmp_path / "brute.pcap", pkts)
    # assert
    assert got == {("MQTT brute force", "10.16.0.30"), ("MQTT login after brute force", "10.16.0.30")}


def _packet(ts: float, src: str, eid: str, **num: float) -> Event:
    return Event(ts=ts, entity=src, peer="192.168.1.7", kind="packet", action="mqtt", num=num, event_id=eid)


def _query(ts: float, name: str, eid: str) -> Event:
    return Event(ts=ts, entity="10.0.0.9", peer="10.0.0.1", kind="dns", action="A", cat={"query": name}, event_id=eid)


def _feeder_cases(flow: Any) -> dict[str, tuple[list[Event], set[str]]]:
    """Feeder rule name -> events, and the ids of those it must match (the others it must not)."""
    return {
        "auth_failed": (
            [
                Event(ts=0.0, entity="root", peer="1.2.3.4", kind="auth", action="login.failed", event_id="sshd"),
                Event(ts=1.0, entity="pi", peer="1.2.3.4", kind="auth", action="auth.failed", event_id="zeek"),
                Event(ts=2.0, entity="root", peer="1.2.3.4", kind="auth", action="pam.auth_failure", event_id="pam"),
                Event(ts=3.0, entity="root", peer="1.2.3.4", kind="auth", action="login.success", event_id="ok"),
            ],
            {"sshd", "zeek"},
        ),
        "auth_success": (
            [
                Event(ts=0.0, entity="root", peer="1.2.3.4", kind="auth", action="login.success", event_id="sshd"),
                Event(ts=1.0, entity="pi", peer="1.2.3.4", kind="auth", action="auth.success", event_id="zeek"),
                Event(ts=2.0, entity="root", peer="1.2.3.4", kind="auth", action="login.failed", event_id="no"),
            ],
            {"sshd", "zeek"},
        ),
        "rare_peer_contact": (  # fan-in counts devices seen so far: the third device to a peer is not rare
            [
                flow(0.0, "10.0.0.1", "198.51.100.5", 443),
                flow(1.0, "10.0.0.2", "198.51.100.5", 443),
                flow(2.0, "10.0.0.3", "198.51.100.5", 443),
                flow(3.0, "10.0.0.4", "203.0.113.9", 53),
            ],
            {"f0.0-10.0.0.1-198.51.100.5-443", "f1.0-10.0.0.2-198.51.100.5-443"},
        ),
        "dns_odd_query": (
            [
                _query(0.0, "a" * 45 + ".evil.example", "long"),
                _query(1.0, "x7k2q9vz4m1w8r3t6y5u0p.evil.example", "random"),
                _query(2.0, "www.example.com", "plain"),
                _query(3.0, "aaaaaaaaaaaaaaaaaaaaaaaa.example.com", "repetitive"),
            ],
            {"long", "random"},
        ),
        "any_flow": (
            [flow(0.0, "10.0.0.1", "198.51.100.5", 80), _packet(1.0, "10.0.0.1", "p", mqtt_type=3)],
            {"f0.0-10.0.0.1-198.51.100.5-80"},
        ),
        "unanswered_attempt": (
            [flow(0.0, "10.0.0.1", "198.51.100.5", 22, "S0"), flow(1.0, "10.0.0.1", "198.51.100.6", 22, "REJ"),
             flow(2.0, "10.0.0.1", "198.51.100.7", 22, "SF")],
            {"f0.0-10.0.0.1-198.51.100.5-22", "f1.0-10.0.0.1-198.51.100.6-22"},
        ),
        "telnet_syn": (
            [
                Event(ts=0.0, entity="10.0.0.9", peer="203.0.113.1", kind="packet", action="tcp",
                      num={"tcp_flags": 2.0, "dst_port": 23.0}, event_id="syn"),
                Event(ts=1.0, entity="10.0.0.9", peer="203.0.113.1", kind="packet", action="tcp",
                      num={"tcp_flags": 18.0, "dst_port": 23.0}, event_id="synack"),
                flow(2.0, "10.0.0.9", "203.0.113.2", 2323, "S0"),
                flow(3.0, "10.0.0.9", "203.0.113.3", 2323, "SF"),
                flow(4.0, "10.0.0.9", "203.0.113.4", 22, "S0"),
            ],
            {"syn", "f2.0-10.0.0.9-203.0.113.2-2323"},
        ),
        "mqtt_refused": (
            [_packet(0.0, "b", "rc4", mqtt_type=2, mqtt_rc=4), _packet(1.0, "b", "rc5", mqtt_type=2, mqtt_rc=5),
             _packet(2.0, "b", "v5", mqtt_type=2, mqtt_rc=134), _packet(3.0, "b", "ok", mqtt_type=2, mqtt_rc=0),
             _packet(4.0, "b", "unavailable", mqtt_type=2, mqtt_rc=3)],
            {"rc4", "rc5", "v5"},
        ),
        "mqtt_accepted": (
            [_packet(0.0, "b", "ok", mqtt_type=2, mqtt_rc=0), _packet(1.0, "b", "no", mqtt_type=2, mqtt_rc=5),
             _packet(2.0, "b", "connect", mqtt_type=1, mqtt_keepalive=60)],
            {"ok"},
        ),
        "mqtt_publish": (
            [_packet(0.0, "c", "pub", mqtt_type=3), _packet(1.0, "c", "sub", mqtt_type=8)],
            {"pub"},
        ),
        "mqtt_long_keepalive": (
            [_packet(0.0, "c", "slow", mqtt_type=1, mqtt_keepalive=65535),
             _packet(1.0, "c", "hour", mqtt_type=1, mqtt_keepalive=3600),
             _packet(2.0, "c", "normal", mqtt_type=1, mqtt_keepalive=60)],
            {"slow", "hour"},
        ),
    }  # fmt: skip


@pytest.mark.parametrize(
    "name",
    [
        "any_flow",
        "auth_failed",
        "auth_success",
        "dns_odd_query",
        "mqtt_accepted",
        "mqtt_long_keepalive",
        "mqtt_publish",
        "mqtt_refused",
        "rare_peer_contact",
        "telnet_syn",
        "unanswered_attempt",
    ],
)
def test_feeder_rule_matches_what_it_describes(pack: list[Rule], mk: Any, name: str) -> None:
    # prepare: the feeder alone (so its hits alert), with the derived fields it may need
    (rule,) = [r for r in pack if r.name == name]
    events, expected = _feeder_cases(mk.flow)[name]
    # execute
    alerts = RuleEngine([rule], enricher=Enricher()).run(mk.frame(events))
    # assert
    assert {e for a in alerts for e in a.evidence} == expected


def test_dns_tunnelling(pack: list[Rule], mk: Any) -> None:
    # prepare: 15 queries with 50-char random labels, and ordinary lookups
    import random

    rng = random.Random(7)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    events = [
        Event(
            ts=float(i),
            entity="10.0.0.9",
            peer="10.0.0.1",
            kind="dns",
            action="TXT",
            cat={"query": "".join(rng.choice(alphabet) for _ in range(50)) + ".t.evil.example"},
            event_id=f"d{i}",
        )
        for i in range(15)
    ]
    events += [
        Event(
            ts=float(i),
            entity="10.0.0.3",
            peer="10.0.0.1",
            kind="dns",
            action="A",
            cat={"query": "www.example.com"},
            event_id=f"n{i}",
        )
        for i in range(15)
    ]
    # execute
    alerts = RuleEngine(pack, enricher=Enricher()).run(mk.frame(events))
    # assert
    tunnel = [a for a in alerts if a.summary.startswith("DNS tunnelling")]
    assert [a.entity for a in tunnel] == ["10.0.0.9"]


def test_exfiltration_new_peer(pack: list[Rule], mk: Any) -> None:
    # prepare: a camera uploads ~20 kB per flow to its cloud, then 50 MB to a new address
    events = [mk.flow(60.0 * i, "10.0.0.9", "198.51.100.10", 443, orig_bytes=20_000.0) for i in range(30)]
    events.append(mk.flow(2000.0, "10.0.0.9", "203.0.113.66", 443, orig_bytes=50_000_000.0))
    events.append(mk.flow(2100.0, "10.0.0.9", "198.51.100.10", 443, orig_bytes=2_000_000.0))  # known peer
    # execute
    fired = _fired(pack, mk.frame(events), enrich=True)
    # assert
    assert fired["Exfiltration to a new peer far above baseline"] == 1


def test_new_listening_service(pack: list[Rule], mk: Any) -> None:
    # prepare: a device serves 443 for two hours, then accepts a connection on 48101
    events = [mk.flow(300.0 * i, "10.0.0.3", "10.0.0.9", 443, "SF") for i in range(25)]
    events.append(mk.flow(8000.0, "10.0.0.4", "10.0.0.9", 48101, "SF"))
    events.append(mk.flow(8100.0, "10.0.0.4", "10.0.0.9", 48102, "REJ"))  # refused: not a listener
    # execute
    alerts = RuleEngine(pack, enricher=Enricher()).run(mk.frame(events))
    # assert
    new = [a for a in alerts if a.summary.startswith("New listening service on a device:")]
    assert len(new) == 1 and new[0].evidence == ["f8000.0-10.0.0.4-10.0.0.9-48101"]
