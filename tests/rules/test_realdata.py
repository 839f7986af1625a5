"""The rules on the shared real data (marked realdata; skipped without it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from misuse.ingest.authlog import AuthLogReader
from misuse.ingest.cowrie import CowrieReader
from misuse.ingest.pcap import PcapReader
from misuse.ingest.zeek import ZeekReader
from misuse.rules import builtin_pack
from misuse.rules.derive import Enricher
from misuse.rules.engine import RuleEngine
from misuse.rules.fusion import group_incidents
from misuse.rules.model import load_rules
from misuse.rules.mqtt import annotate_mqtt, mqtt_fields

FIXTURES = Path(__file__).parent / "fixtures" / "sigma"


@pytest.mark.realdata
def test_public_sigma_rules_run_on_loghub_openssh(shared_data: Path) -> None:
    # prepare: the brute-force sources as loghub's PROVENANCE suggests (>= 5 failures per rhost)
    frame = AuthLogReader(year=2016).read(shared_data / "loghub-auth" / "OpenSSH" / "OpenSSH_2k.log")
    fails = frame[frame["action"].isin(["login.failed", "login.invalid_user", "pam.auth_failure"])]
    brute = set(fails.groupby("peer").size().loc[lambda s: s >= 5].index)
    # execute
    alerts = RuleEngine(load_rules(FIXTURES)).run(frame)
    # assert: the published correlation fires, only on brute-forcing addresses
    corr = [a for a in alerts if a.detector == "rule:f55634e2-baa3-489b-bbce-0c9818cf62ee"]
    assert corr and {a.entity for a in corr} <= brute
    keyword = [a for a in alerts if a.detector == "rule:8d9c5b6a-9b42-4d71-9b3f-sshbruteforce01"]
    cited = set(frame.set_index("event_id").loc[[e for a in keyword for e in a.evidence], "action"])
    assert cited <= {"login.failed", "login.invalid_user", "userauth.invalid_user", "pam.auth_failure", "disconnect"}
    assert sum(a.score for a in keyword) >= len(fails)


@pytest.mark.realdata
def test_pack_on_one_cowrie_day(shared_data: Path) -> None:
    # prepare
    files = sorted((shared_data / "cowrie-2018" / "json").glob("cowrie.json.*"))
    path = max(files, key=lambda f: f.read_text(errors="replace").count("cowrie.login.failed"))
    frame = CowrieReader().read(path)
    fails = frame[frame["action"] == "login.failed"].groupby("peer").size()
    # execute
    alerts = RuleEngine(builtin_pack()).run(frame)
    # assert: every brute-force alert names an address with at least 10 failures that day
    brute = [a for a in alerts if a.misuse_type == "brute_force"]
    assert brute
    assert all(fails.get(a.entity, 0) >= 10 for a in brute if "brute force" in a.summary)


@pytest.mark.realdata
def test_mqttset_attacks_fire_and_benign_stays_quiet(shared_data: Path) -> None:
    # prepare
    root = shared_data / "mqttset"
    expected = {
        "bruteforce.pcapng": "MQTT brute force",
        "slowite.pcap": "MQTT SlowITe (many long keep-alive connections)",
        "malformed.pcap": "Malformed MQTT packet",
        "flood.pcap": "MQTT publish flood (volume)",
        "benign.pcap": None,
    }
    pack = builtin_pack()
    for name, title in expected.items():
        frame = annotate_mqtt(PcapReader().read(root / name), root / name)
        # execute
        fired = {a.summary.split(":")[0] for a in RuleEngine(pack).run(frame)}
        # assert
        assert (title in fired) if title else not fired, (name, fired)


@pytest.mark.realdata
def test_iot23_flood_alerts_are_ddos_and_grouped(shared_data: Path) -> None:
    # prepare
    path = shared_data / "iot23" / "CTU-IoT-Malware-Capture-34-1" / "bro" / "conn.log.labeled"
    frame = ZeekReader().read(path)
    labels = dict(zip(frame["event_id"], frame["label"], strict=True))
    # execute
    alerts = RuleEngine(builtin_pack(), enricher=Enricher()).run(frame)
    incidents = group_incidents(alerts)
    # assert
    flood = [a for a in alerts if a.summary.startswith("Connection flood")]
    assert flood and all(labels[e] == "DDoS" for a in flood for e in a.evidence)
    assert len(incidents) < len(alerts)


@pytest.mark.realdata
def test_mqttset_bruteforce_guesses_one_account(shared_data: Path) -> None:
    # prepare: MQTTset's brute force guesses passwords for one user name, "user"
    path = shared_data / "mqttset" / "bruteforce.pcapng"
    fields = mqtt_fields(path)
    refused = fields[(fields["num.mqtt_type"] == 2.0) & fields["num.mqtt_rc"].isin([4.0, 5.0])]
    benign = mqtt_fields(shared_data / "mqttset" / "benign.pcap")
    connects = benign[benign["num.mqtt_type"] == 1.0]
    # execute
    frame = annotate_mqtt(PcapReader().read(path), path)
    fired = {a.summary.split(":")[0] for a in RuleEngine(builtin_pack()).run(frame)}
    # assert: every refusal is tied to its CONNECT's names; one account, so brute force but no
    # credential stuffing, and no accepted login after it
    assert len(refused) > 1000
    assert set(refused["cat.mqtt_username"].dropna()) == {"user"}
    assert refused["cat.mqtt_client_id"].notna().all()
    assert "MQTT brute force" in fired
    assert not fired & {"MQTT credential stuffing (many user names from one client)", "MQTT login after brute force"}
    assert len(connects) > 0 and connects["cat.mqtt_client_id"].str.len().gt(0).all()
    assert connects["cat.mqtt_username"].isna().all()
