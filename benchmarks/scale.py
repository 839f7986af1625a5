"""Scale-out of the window model: single process vs Dask with 1 and 2 workers, time and peak memory.

Dataset: the real IoT-23 CTU-IoT-Malware-Capture-34-1 ``conn.log.labeled`` (23,145 Zeek flows of a
Mirai-infected device, ``$MISUSE_DATA_DIR/iot23``, default ``../shared/data``) replicated under new
entity ids (``192.168.1.195#r0042``; event ids get the same suffix) until ``--rows`` events
(default 10,000,000), written once as Parquet partitioned by entity (``--buckets``).

Split: train on the events before the capture's midpoint (``until``), detect on the events from
it on (``since``); window 60 s, iforest, seed 0, target false-positive rate 1 %.

Each configuration runs in its own subprocess, nice'd: ``single`` (:func:`misuse.pipeline.train`
and ``detect`` on the whole dataset read into one frame) and ``dask-N`` (a ``local:N``
LocalCluster of N single-threaded worker processes, :func:`misuse.scale.run.train_partitioned`
and ``detect_partitioned``). Peak memory is the largest summed resident memory of the
subprocess and all its children (the Dask workers), sampled every 0.2 s. Each run reports a
fingerprint (threshold, sum of scores, alert ids) and the table says whether it equals the
single-process one.

Finally a live-path estimate: 34-1 flows under ``--live-entities`` ids replayed one event at a
batch through the service's :class:`misuse.service.stream.StreamProcessor` (the live worker: parse,
deduplicate, store, per-entity windows, detect on closed windows): events/s one worker core sustains.

Usage::

    python benchmarks/scale.py                 # 10M rows (make bench); tens of minutes on 2 cores
    python benchmarks/scale.py --rows 500000   # quick
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parent.parent
CAPTURE = "iot23/CTU-IoT-Malware-Capture-34-1/bro/conn.log.labeled"
WINDOW = 60.0
SEED = 0
FPR = 0.01


def data_dir() -> Path:
    """Where the shared real data is (MISUSE_DATA_DIR or ../shared/data)."""
    return Path(os.environ.get("MISUSE_DATA_DIR", REPO.parent / "shared" / "data"))


def real_flows() -> pd.DataFrame:
    """The 34-1 flows as events."""
    from misuse.ingest.zeek import ZeekReader

    path = data_dir() / CAPTURE
    if not path.is_file():
        sys.exit(f"benchmarks/scale.py: {path} not found (set MISUSE_DATA_DIR)")
    return ZeekReader().read(path)


def replicas(flows: pd.DataFrame, rows: int, per_batch: int = 16) -> Iterator[pd.DataFrame]:
    """The flows repeated under new entity ids until ``rows`` events, a few replicas per batch."""
    copies = math.ceil(rows / len(flows))
    for first in range(0, copies, per_batch):
        frames = []
        for r in range(first, min(first + per_batch, copies)):
            f = flows.copy()
            suffix = f"#r{r:04d}"
            f["entity"] = f["entity"] + suffix
            f["event_id"] = f["event_id"] + suffix
            if "cat.uid" in f.columns:
                f["cat.uid"] = f["cat.uid"].astype(str) + suffix
            frames.append(f)
        yield pd.concat(frames, ignore_index=True)


def build(root: Path, rows: int, buckets: int) -> dict[str, object]:
    """Write the replicated dataset (reused when it is already there with the same size)."""
    from misuse.scale.partition import PartitionedDataset, write_partitioned

    flows = real_flows()
    want = math.ceil(rows / len(flows)) * len(flows)
    if (root / "_dataset.json").is_file():
        ds = PartitionedDataset.open(root)
        if ds.rows == want and ds.buckets == buckets:
            return {"rows": ds.rows, "write_s": None, "flows": len(flows)}
    t = time.perf_counter()
    ds = write_partitioned(replicas(flows, rows), root, "iot23-34-1-replicated", buckets=buckets)
    return {"rows": ds.rows, "write_s": time.perf_counter() - t, "flows": len(flows)}


def split_time() -> tuple[str, str]:
    """The capture's midpoint (train before it, detect from it on)."""
    flows = real_flows()
    mid = flows["ts"].min() + (flows["ts"].max() - flows["ts"].min()) / 2
    return str(mid), str(mid)


# ------------------------------------------------------------------------------ one run (subprocess)


def fingerprint(model: object, alerts: list, scored: pd.DataFrame) -> dict[str, object]:
    """What must be equal between configurations."""
    ids = hashlib.sha1("|".join(a.alert_id for a in alerts).encode()).hexdigest()[:12]
    return {
        "threshold": float(model.threshold.threshold_),  # type: ignore[attr-defined]
        "score_sum": round(float(scored["score"].sum()), 6) if len(scored) else 0.0,
        "windows": len(scored),
        "alerts": len(alerts),
        "alert_ids": ids,
    }


def _warm() -> None:
    import misuse.pipeline  # noqa: F401


def run_one(mode: str, data: Path, workers: int, out: Path) -> None:
    """Train + detect in one configuration; write timings and the fingerprint to ``out``."""
    from misuse.pipeline import detect, train
    from misuse.scale.cluster import connect
    from misuse.scale.partition import PartitionedDataset
    from misuse.scale.run import detect_partitioned, train_partitioned

    ds = PartitionedDataset.open(data)
    until, since = split_time()
    res: dict[str, object] = {"mode": mode, "workers": workers}
    if mode == "single":
        t0 = time.perf_counter()
        events = ds.read_all()
        res["read_s"] = time.perf_counter() - t0
        t = time.perf_counter()
        model = train(events[events["ts"] < pd.Timestamp(until)], window=WINDOW, target_fpr=FPR, seed=SEED)
        res["train_s"] = time.perf_counter() - t
        t = time.perf_counter()
        alerts, scored = detect(model, events[events["ts"] >= pd.Timestamp(since)])
        res["detect_s"] = time.perf_counter() - t
        res["startup_s"] = 0.0
        res["total_s"] = time.perf_counter() - t0
    else:
        t0 = time.perf_counter()
        with connect(f"local:{workers}", memory_limit="6GB") as client:
            client.run(_warm)  # the workers import the package once, counted as start-up
            res["startup_s"] = time.perf_counter() - t0
            t = time.perf_counter()
            model = train_partitioned(ds, client=client, window=WINDOW, target_fpr=FPR, seed=SEED, until=until)
            res["train_s"] = time.perf_counter() - t
            t = time.perf_counter()
            alerts, scored = detect_partitioned(model, ds, client=client, since=since)
            res["detect_s"] = time.perf_counter() - t
        res["total_s"] = time.perf_counter() - t0
    res["fingerprint"] = fingerprint(model, alerts, scored)
    out.write_text(json.dumps(res))


def measured(cmd: list[str], cap_mb: float) -> tuple[int, float, float, float]:
    """Run ``cmd``; return its exit code, the peak summed RSS of its process tree (MB), the peak of
    one process (MB) and the CPU seconds of the tree. The tree is killed above ``cap_mb`` (the
    machine is shared): exit code -9 then."""
    import psutil

    proc = subprocess.Popen(cmd)
    parent = psutil.Process(proc.pid)
    peak_total = peak_one = 0.0
    cpu: dict[int, float] = {}
    while proc.poll() is None:
        rss = []
        try:
            procs = [parent, *parent.children(recursive=True)]
        except psutil.Error:
            procs = []
        for p in procs:
            try:
                with p.oneshot():
                    rss.append(p.memory_info().rss / 1e6)
                    times = p.cpu_times()
                    cpu[p.pid] = times.user + times.system
            except psutil.Error:
                continue
        peak_total = max(peak_total, sum(rss))
        peak_one = max(peak_one, max(rss, default=0.0))
        if peak_total > cap_mb:
            for p in reversed(procs):
                try:
                    p.kill()
                except psutil.Error:
                    continue
            proc.wait()
            return -9, peak_total, peak_one, sum(cpu.values())
        time.sleep(0.2)
    return proc.returncode, peak_total, peak_one, sum(cpu.values())


# ------------------------------------------------------------------------------ live path estimate


def live_rate(entities: int, limit: int, batch: int = 500) -> dict[str, float]:
    """Events/s of the live path on one core: :class:`misuse.service.stream.StreamProcessor` (parse,
    deduplicate, store, per-entity windows, ``detect`` on closed windows) fed batches of ``batch``
    34-1 flows under ``entities`` ids in time order."""
    import threading

    from misuse.pipeline import train
    from misuse.service.metrics import Metrics
    from misuse.service.stream import StreamProcessor, parse_objects
    from misuse.store.duck import Store

    flows = real_flows()
    model = train(flows, window=WINDOW, target_fpr=FPR, seed=SEED)
    frames = []
    for r in range(entities):
        f = flows.copy()
        f["entity"] = f["entity"] + f"#r{r:04d}"
        f["event_id"] = f["event_id"] + f"#r{r:04d}"
        frames.append(f)
    stream = pd.concat(frames, ignore_index=True).sort_values("ts", kind="stable").head(limit)
    stream = stream.assign(ts=stream["ts"].astype("int64") / 1e9).drop(columns=["source"])
    objs = [{k: v for k, v in rec.items() if v is not None and v == v} for rec in stream.to_dict("records")]
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "proj")
        model.save(store.model_dir("live"))
        store.register_model("live", "window", model.info)
        proc = StreamProcessor(store, threading.RLock(), Metrics())
        proc.load_model("live")
        windows = 0
        t = time.perf_counter()
        for i in range(0, len(objs), batch):
            parsed = parse_objects(objs[i : i + batch], "bench", "bench", time.time())
            windows += proc.ingest(parsed, "bench").windows_scored
        windows += proc.flush().windows_scored
        elapsed = time.perf_counter() - t
        store.close()
    return {"events": len(objs), "windows": windows, "seconds": elapsed, "events_per_s": len(objs) / elapsed}


# ------------------------------------------------------------------------------ main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--rows", type=int, default=10_000_000, help="events in the replicated dataset")
    ap.add_argument("--buckets", type=int, default=32, help="entity partitions")
    ap.add_argument("--workers", default="1,2", help="Dask worker counts to try")
    ap.add_argument("--work", type=Path, default=None, help="folder for the dataset (default: a temp folder)")
    ap.add_argument("--live-entities", type=int, default=20)
    ap.add_argument("--live-events", type=int, default=100_000)
    ap.add_argument("--mem-cap-mb", type=float, default=12_000, help="kill a run whose processes exceed this")
    ap.add_argument("--skip-single", action="store_true", help="only the Dask runs")
    ap.add_argument("--run-one", nargs=4, metavar=("MODE", "DATA", "WORKERS", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.run_one:
        mode, data, workers, out = args.run_one
        run_one(mode, Path(data), int(workers), Path(out))
        return

    work = args.work or Path(tempfile.mkdtemp(prefix="misuse-scale-"))
    data = work / "events"
    print(f"dataset: IoT-23 {CAPTURE} replicated under new entity ids -> {data}")
    built = build(data, args.rows, args.buckets)
    write = "reused" if built["write_s"] is None else f"written in {built['write_s']:.1f}s"
    print(
        f"  {built['rows']:,} events ({built['flows']:,} real flows x {built['rows'] // built['flows']} entity copies),"
        f" {args.buckets} partitions, {write}"
    )
    print(f"  split: train on events before the capture midpoint, detect from it on; window {WINDOW:g}s, iforest,")
    print(f"  seed {SEED}, target FPR {FPR:.0%}; machine: {os.cpu_count()} cores (shared), runs nice'd\n")

    configs = ([] if args.skip_single else [("single", 0)]) + [
        ("dask", int(w)) for w in args.workers.split(",") if w.strip()
    ]
    results = []
    for mode, workers in configs:
        out = work / f"result-{mode}-{workers}.json"
        cmd = ["nice", "-n", "10", sys.executable, __file__, "--run-one", mode, str(data), str(workers), str(out)]
        code, peak_total, peak_one, cpu_s = measured(cmd, args.mem_cap_mb)
        if code == -9:
            print(f"  {mode} {workers}: stopped at {peak_total:,.0f} MB, above --mem-cap-mb {args.mem_cap_mb:,.0f}")
            continue
        if code != 0:
            print(f"  {mode} {workers}: failed with exit code {code}")
            continue
        res = json.loads(out.read_text())
        res.update(peak_total_mb=peak_total, peak_one_mb=peak_one, cpu_s=cpu_s)
        results.append(res)
        print(
            f"  done: {mode}{'-' + str(workers) if workers else ''} total {res['total_s']:.1f}s"
            f" peak {peak_total:,.0f} MB",
            flush=True,
        )
    if not results:
        return
    base = results[0]
    rows = int(built["rows"])  # type: ignore[call-overload]
    print(
        f"\n{'config':<10}{'workers':>8}{'startup s':>11}{'train s':>9}{'detect s':>10}{'total s':>9}"
        f"{'events/s':>11}{'speed-up':>10}{'CPU s':>8}{'peak MB':>9}{'max proc MB':>12}  same result"
    )
    for r in results:
        name = "single" if r["mode"] == "single" else f"dask-{r['workers']}"
        print(
            f"{name:<10}{r['workers'] or 1:>8}{r['startup_s']:>11.1f}{r['train_s']:>9.1f}{r['detect_s']:>10.1f}"
            f"{r['total_s']:>9.1f}{rows / r['total_s']:>11,.0f}{base['total_s'] / r['total_s']:>10.2f}"
            f"{r['cpu_s']:>8.0f}"
            f"{r['peak_total_mb']:>9,.0f}{r['peak_one_mb']:>12,.0f}  "
            f"{'yes' if r['fingerprint'] == base['fingerprint'] else 'NO'}"
        )
    print(f"\nfingerprint ({results[0]['mode']}): {json.dumps(base['fingerprint'])}")
    print("scaling curve (events/s, train + detect, vs workers):")
    peak = max(rows / r["total_s"] for r in results)
    for r in results:
        name = "single" if r["mode"] == "single" else f"dask-{r['workers']}"
        rate = rows / r["total_s"]
        print(f"  {name:<8} {'#' * max(1, round(40 * rate / peak)):<40} {rate:,.0f}")

    live = live_rate(args.live_entities, args.live_events)
    print(
        f"\nlive path (StreamProcessor.ingest, batches of 500, one core, {args.live_entities} entities of 34-1 flows): "
        f"{live['events']:,} events, {live['windows']:,} windows in {live['seconds']:.1f}s = "
        f"{live['events_per_s']:,.0f} events/s"
    )


if __name__ == "__main__":
    main()
