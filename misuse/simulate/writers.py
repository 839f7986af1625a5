"""Write a simulated site in the formats real tools produce, so the real readers can parse it.

=====================  ==============================================================
file                   format
=====================  ==============================================================
``conn.log.labeled``   Zeek conn.log (TSV with ``#`` header) plus IoT-23's two label
                       columns ``label`` (Benign/Malicious) and ``detailed-label``
``auth.log``           OpenSSH syslog lines of the hub (``sshd[pid]: ...``)
``app.jsonl``          app and admin commands, one event per line in the flattened
                       event form (``event_id``, ``ts``, ``entity``, ..., ``num.*``,
                       ``cat.*``)
``truth.csv``          the incidents: one row per injected attack
``README.txt``         what the folder holds, the seed and the parameters
=====================  ==============================================================
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from misuse.errors import InvalidParameterError
from misuse.events import BASE_COLUMNS, CAT_PREFIX, NUM_PREFIX
from misuse.simulate.generate import APP_LOG, AUTH_LOG, CONN_LOG, SimulatedSite
from misuse.simulate.people import sshd_message

ZEEK_FIELDS: tuple[str, ...] = (
    "ts",
    "uid",
    "id.orig_h",
    "id.orig_p",
    "id.resp_h",
    "id.resp_p",
    "proto",
    "service",
    "duration",
    "orig_bytes",
    "resp_bytes",
    "conn_state",
    "local_orig",
    "local_resp",
    "missed_bytes",
    "history",
    "orig_pkts",
    "orig_ip_bytes",
    "resp_pkts",
    "resp_ip_bytes",
    "tunnel_parents",
    "label",
    "detailed-label",
)
ZEEK_TYPES: tuple[str, ...] = (
    "time",
    "string",
    "addr",
    "port",
    "addr",
    "port",
    "enum",
    "string",
    "interval",
    "count",
    "count",
    "string",
    "bool",
    "bool",
    "count",
    "string",
    "count",
    "count",
    "count",
    "count",
    "set[string]",
    "string",
    "string",
)
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
LOCAL_PREFIX = "192.168."


def write_site(site: SimulatedSite, out_dir: Path) -> dict[str, Path]:
    """Write every file of a simulated site into ``out_dir`` (created if needed).

    The output depends only on the site, so the same seed and parameters give byte-identical
    files.

    Parameters
    ----------
    site:
        What :func:`~misuse.simulate.simulate_site` returned.
    out_dir:
        Folder to write into; existing files of the same names are replaced.

    Returns
    -------
    dict
        ``{"conn": ..., "auth": ..., "app": ..., "truth": ..., "readme": ...}`` -> paths written.

    Raises
    ------
    InvalidParameterError
        When ``out_dir`` exists and is not a directory.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InvalidParameterError(f"write_site: out_dir {str(out)!r} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "conn": out / CONN_LOG,
        "auth": out / AUTH_LOG,
        "app": out / APP_LOG,
        "truth": out / "truth.csv",
        "readme": out / "README.txt",
    }
    _write_text(paths["conn"], conn_log_text(site))
    _write_text(paths["auth"], auth_log_text(site))
    _write_text(paths["app"], app_jsonl_text(site))
    _write_text(paths["truth"], truth_csv_text(site))
    _write_text(paths["readme"], readme_text(site))
    return paths


def _write_text(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(text)


def _epoch_micros(ts: pd.Series) -> np.ndarray:
    """``1772409604.163222``: epoch seconds with six decimals, rounded to the microsecond."""
    ns = ts.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    us = (ns + 500) // 1000
    whole = (us // 1_000_000).astype(str)
    frac = np.char.zfill((us % 1_000_000).astype(str), 6)
    return np.char.add(np.char.add(whole, "."), frac).astype(object)


def _fmt(values: np.ndarray, spec: str) -> np.ndarray:
    """Format numbers, ``-`` (Zeek's unset field) where NaN."""
    out = np.full(values.shape, "-", dtype=object)
    ok = ~np.isnan(values)
    if spec == "int":
        out[ok] = values[ok].astype(np.int64).astype(str)
    else:
        out[ok] = np.char.mod(spec, values[ok])
    return out


def conn_log_text(site: SimulatedSite) -> str:
    """The flows as a Zeek ``conn.log.labeled`` file (IoT-23 label columns, tab separated)."""
    f = site.flows
    start = pd.Timestamp(site.params.start, tz="UTC")
    end = start + pd.Timedelta(days=site.params.days)
    ts_txt = _epoch_micros(f["ts"])
    malicious = f["label"].to_numpy(dtype=object) != "benign"
    orig = f["entity"].to_numpy(dtype=object)
    resp = f["peer"].to_numpy(dtype=object)
    cols: list[object] = [
        ts_txt,
        f["event_id"].to_numpy(dtype=object),
        orig,
        _fmt(f["num.src_port"].to_numpy(dtype=float), "int"),
        resp,
        _fmt(f["num.dst_port"].to_numpy(dtype=float), "int"),
        f["cat.proto"].to_numpy(dtype=object),
        f["cat.service"].fillna("-").to_numpy(dtype=object),
        _fmt(f["num.duration"].to_numpy(dtype=float), "%.6f"),
        _fmt(f["num.orig_bytes"].to_numpy(dtype=float), "int"),
        _fmt(f["num.resp_bytes"].to_numpy(dtype=float), "int"),
        f["cat.conn_state"].to_numpy(dtype=object),
        np.where(pd.Series(orig).str.startswith(LOCAL_PREFIX).to_numpy(), "T", "F").astype(object),
        np.where(pd.Series(resp).str.startswith(LOCAL_PREFIX).to_numpy(), "T", "F").astype(object),
        _fmt(f["num.missed_bytes"].to_numpy(dtype=float), "int"),
        f["cat.history"].to_numpy(dtype=object),
        _fmt(f["num.orig_pkts"].to_numpy(dtype=float), "int"),
        _fmt(f["num.orig_ip_bytes"].to_numpy(dtype=float), "int"),
        _fmt(f["num.resp_pkts"].to_numpy(dtype=float), "int"),
        _fmt(f["num.resp_ip_bytes"].to_numpy(dtype=float), "int"),
        np.full(len(f), "-", dtype=object),
        np.where(malicious, "Malicious", "Benign").astype(object),
        np.where(malicious, f["label"].to_numpy(dtype=object), "-").astype(object),
    ]
    series = [pd.Series(col, dtype=object).astype(str) for col in cols]
    rows = series[0].str.cat(pd.concat(series[1:], axis=1), sep="\t") if len(f) else pd.Series([])
    header = [
        "#separator \\x09",
        "#set_separator\t,",
        "#empty_field\t(empty)",
        "#unset_field\t-",
        "#path\tconn",
        f"#open\t{start.strftime('%Y-%m-%d-%H-%M-%S')}",
        "#fields\t" + "\t".join(ZEEK_FIELDS),
        "#types\t" + "\t".join(ZEEK_TYPES),
    ]
    footer = f"#close\t{end.strftime('%Y-%m-%d-%H-%M-%S')}"
    return "\n".join([*header, *rows.tolist(), footer]) + "\n"


def _syslog_stamp(ts: pd.Series) -> list[str]:
    return [f"{_MONTHS[t.month - 1]} {t.day:>2} {t:%H:%M:%S}" for t in ts]


def auth_log_text(site: SimulatedSite) -> str:
    """The hub's sshd lines in syslog form (``Mar  2 09:15:01 hub sshd[1234]: ...``)."""
    a = site.auth
    lines: list[str] = []
    stamps = _syslog_stamp(a["ts"])
    for stamp, user, action, ip, port, pid in zip(
        stamps,
        a["entity"],
        a["action"],
        a["peer"],
        a["num.src_port"],
        a["num.pid"],
        strict=True,
    ):
        msg = sshd_message(str(action), str(user), str(ip), float(port))
        lines.append(f"{stamp} hub sshd[{int(pid)}]: {msg}")
    return "".join(line + "\n" for line in lines)


def _nan(v: object) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def app_jsonl_text(site: SimulatedSite) -> str:
    """The commands as JSON lines in the flattened event form (ISO-8601 UTC timestamps)."""
    c = site.commands
    ns = c["ts"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    ms = pd.Series(pd.to_datetime((ns + 500_000) // 1_000_000, unit="ms", utc=True))
    stamps = ms.dt.strftime("%Y-%m-%dT%H:%M:%S.%f").str.slice(0, 23) + "Z"
    extra = sorted(col for col in c.columns if col.startswith(NUM_PREFIX))
    extra += sorted(col for col in c.columns if col.startswith(CAT_PREFIX))
    out: list[str] = []
    for i, rec in enumerate(c.to_dict(orient="records")):
        obj: dict[str, object] = {k: rec[k] for k in BASE_COLUMNS}
        obj["ts"] = stamps.iloc[i]
        for col in extra:
            v = rec[col]
            if not _nan(v):
                obj[col] = float(v) if col.startswith(NUM_PREFIX) else str(v)
        out.append(json.dumps(obj, ensure_ascii=False))
    return "".join(line + "\n" for line in out)


def truth_csv_text(site: SimulatedSite) -> str:
    """The incidents table as CSV, times in ISO-8601 UTC with microseconds."""
    t = site.truth.copy()
    for col in ("start", "end"):
        t[col] = t[col].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return str(t.to_csv(index=False, lineterminator="\n"))


def readme_text(site: SimulatedSite) -> str:
    """A plain description of the folder: parameters, files, counts and incidents."""
    p = site.params
    first, _ = site.day_bounds(0)
    a_lo, _ = site.day_bounds(p.attack_day)
    lines = [
        "Simulated IoT site generated by misuse.simulate (synthetic data, no real traffic).",
        "",
        "Parameters",
        f"  seed        {p.seed}",
        f"  days        {p.days} (from {first:%Y-%m-%d} 00:00 UTC)",
        f"  attack_day  {p.attack_day} ({a_lo:%Y-%m-%d}; all other days are clean)",
        f"  attacks     {', '.join(p.attacks) if p.attacks else '(none)'}",
        f"  scale       {p.scale:g}",
        "",
        "Reproduce: misuse.simulate.simulate_site(seed=..., days=..., start=..., attack_day=...,",
        "attacks=[...], scale=...) with the values above, then write_site(site, out_dir).",
        "",
        "Files",
        f"  {CONN_LOG:<17} Zeek conn.log + IoT-23 label columns: {len(site.flows)} flows",
        f"  {AUTH_LOG:<17} OpenSSH syslog lines of the hub (sshd): {len(site.auth)} lines",
        f"  {APP_LOG:<17} app/admin commands, flattened events: {len(site.commands)} lines",
        f"  {'truth.csv':<17} ground truth: {len(site.truth)} incidents",
        "",
        "Network: site 192.168.1.0/24 (hub/gateway/DNS/SSH 192.168.1.1, MQTT broker 192.168.1.2);",
        "outside addresses are RFC 5737 documentation ranges (198.51.100.0/24 vendor clouds,",
        "192.0.2.0/24 NTP and rare peers, 203.0.113.0/24 attackers). Timestamps are UTC.",
        "",
        "Labels per file",
    ]
    for name, frame in ((CONN_LOG, site.flows), (AUTH_LOG, site.auth), (APP_LOG, site.commands)):
        counts = frame["label"].value_counts().sort_index()
        lines.append(f"  {name}: " + ", ".join(f"{k}={int(v)}" for k, v in counts.items()))
    lines += ["", "Incidents"]
    for row in site.truth.itertuples(index=False):
        lines.append(
            f"  {row.attack_id} {row.type}: {row.start:%Y-%m-%d %H:%M:%S} - {row.end:%H:%M:%S} UTC, "
            f"{row.n_events} events; {row.description}"
        )
    return "\n".join(lines) + "\n"
