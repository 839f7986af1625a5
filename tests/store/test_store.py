from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from misuse.alerts.model import Alert
from misuse.errors import InvalidParameterError, NotFoundError, StoreError
from misuse.events import Event, events_to_frame
from misuse.store.duck import SCHEMA_VERSION, Store


def _alert(entity: str = "cam") -> Alert:
    t = datetime(2026, 1, 1, tzinfo=UTC)
    return Alert(
        entity=entity,
        window_start=t,
        window_end=t,
        score=0.9,
        threshold=0.6,
        severity="high",
        misuse_type="botnet",
        detector="test",
        summary="s",
        contributions=[{"feature": "peers", "typical": 1.0, "actual": 40.0, "weight": 1.0}],
        evidence=["e1", "e2"],
    )


def test_state_survives_reopening(tmp_path: Path) -> None:
    root = tmp_path / ".misuse"
    with Store(root) as s:
        frame = events_to_frame([Event(ts=float(i), entity="a", kind="k", action="x") for i in range(5)])
        assert s.write_events("d", [frame], ["f"]) == 5
        s.add_alerts([_alert()], dataset="d", model="m")
        s.register_model("m", "window", {"x": 1})
    with Store(root, create=False) as s:
        assert s.count_events("d") == 5
        assert len(s.events("d")) == 5
        a = s.alerts()
        assert a["evidence"].iloc[0] == ["e1", "e2"]
        assert a["contributions"].iloc[0][0]["actual"] == 40.0
        assert s.active_model("window") == "m"
        assert s.schema_version() == SCHEMA_VERSION


def test_alerts_are_idempotent_and_feedback_is_recorded(tmp_path: Path) -> None:
    with Store(tmp_path / "p") as s:
        s.add_alerts([_alert(), _alert()])
        assert len(s.alerts()) == 1
        aid = s.alerts()["alert_id"].iloc[0]
        s.add_feedback(aid, "false_positive", analyst="ana", note="maintenance")
        s.acknowledge(aid)
        assert s.feedback()["verdict"].tolist() == ["false_positive"]
        assert s.alerts(status="acknowledged")["alert_id"].tolist() == [aid]
        with pytest.raises(InvalidParameterError, match="verdict"):
            s.add_feedback(aid, "maybe")
        with pytest.raises(NotFoundError, match="no alert"):
            s.add_feedback("nope", "true_positive")


def test_missing_store_and_newer_schema_are_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no project store"):
        Store(tmp_path / "absent", create=False)
    root = tmp_path / "p"
    Store(root).close()
    con = duckdb.connect(str(root / "misuse.duckdb"))
    con.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    con.close()
    with pytest.raises(StoreError, match="newer"):
        Store(root)


def test_unknown_dataset_names_the_known_ones(tmp_path: Path) -> None:
    with Store(tmp_path / "p") as s:
        s.write_events("real", [events_to_frame([Event(ts=0.0, entity="a", kind="k", action="x")])], ["f"])
        with pytest.raises(NotFoundError, match="real"):
            s.events("missing")


def _events(n: int, entity: str, **attrs: dict[str, float] | dict[str, str]) -> list[Event]:
    return [Event(ts=float(i), entity=entity, kind="flow", action="mqtt", **attrs) for i in range(n)]  # type: ignore[arg-type]


def test_events_are_queryable_in_duckdb_across_datasets(tmp_path: Path) -> None:
    with Store(tmp_path / "p") as s:
        s.write_events("lab", [events_to_frame(_events(3, "cam", num={"bytes": 10.0}))], ["a.pcap"])
        s.write_events("lab", [events_to_frame(_events(2, "plug", cat={"state": "on"}))], ["b.csv"], replace=False)
        s.write_events("home", [events_to_frame(_events(4, "lock"))], ["c.log"])

        per_dataset = s.con.execute("SELECT dataset, entity, count(*) FROM events GROUP BY ALL ORDER BY ALL").fetchall()
        attrs = s.con.execute(
            'SELECT sum("num.bytes"), count("cat.state") FROM events WHERE dataset = ?', ["lab"]
        ).fetchone()
        late = s.con.execute("SELECT count(*) FROM events WHERE ts >= TIMESTAMPTZ '1970-01-01 00:00:02+00'").fetchone()

    assert per_dataset == [("home", "lock", 4), ("lab", "cam", 3), ("lab", "plug", 2)]
    assert attrs == (30.0, 2)
    assert late == (3,)  # cam at 2 s, lock at 2 and 3 s


def test_the_events_view_follows_rewrites_reopening_and_a_moved_folder(tmp_path: Path) -> None:
    with Store(tmp_path / "p") as s:
        empty = s.con.execute("SELECT count(*) FROM events").fetchone()
        s.write_events("d", [events_to_frame(_events(5, "a"))], ["f"])
        s.write_events("d", [events_to_frame(_events(2, "b", num={"x": 1.0}))], ["g"])
        rewritten = s.con.execute('SELECT entity, count(*), sum("num.x") FROM events GROUP BY entity').fetchall()
    (tmp_path / "p").rename(tmp_path / "moved")
    with Store(tmp_path / "moved", create=False) as s:
        moved = s.con.execute("SELECT count(*) FROM events").fetchone()

    assert empty == (0,)
    assert rewritten == [("b", 2, 2.0)]
    assert moved == (2,)


def test_an_unreadable_part_leaves_its_dataset_out_of_the_view_not_the_store_unusable(tmp_path: Path) -> None:
    root = tmp_path / "p"
    with Store(root) as s:
        s.write_events("good", [events_to_frame(_events(3, "a"))], ["f"])
        s.write_events("bad", [events_to_frame(_events(3, "b"))], ["g"])
    (root / "events" / "bad" / "part-00000.parquet").write_bytes(b"not parquet")

    with Store(root, create=False) as s:
        left_out = s.refresh_events_view()
        rows = s.con.execute("SELECT dataset, count(*) FROM events GROUP BY dataset").fetchall()

    assert left_out == ["bad"]
    assert rows == [("good", 3)]


def test_reading_a_dataset_ticks_once_per_stored_part(tmp_path: Path) -> None:
    ticks: list[int] = []
    with Store(tmp_path / "p") as s:
        s.write_events("d", [events_to_frame(_events(2, e)) for e in ("a", "b", "c")], ["f"])

        frame = s.events("d", tick=ticks.append)

    assert (len(frame), ticks) == (6, [1, 1, 1])
