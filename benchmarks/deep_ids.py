"""Deep IDS (packet-sequence CNN, flow-graph GNN) beside the classic detectors; see misuse/eval/deep.py.

The same as ``misuse eval deep``: IoT-23 34-1, MQTTset and the simulator on the harness's splits,
seeds 0..n-1 and training-set thresholds, with training time and rows/s on this machine.

Usage: ``nice .venv/bin/python benchmarks/deep_ids.py [--data DIR] [--seeds 5] [--only iot23] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from misuse.eval import datasets as ds
from misuse.eval.deep import run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="shared data folder (default MISUSE_DATA_DIR or ../shared/data)")
    ap.add_argument("--seeds", type=int, default=5, help="seeds 0..n-1 (default 5)")
    ap.add_argument("--only", choices=("iot23", "mqttset", "simulator"), default=None)
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = ap.parse_args()
    root = ds.data_root(args.data)
    seeds = list(range(args.seeds))
    print(f"seeds {seeds}; CPU threads: torch default; data {root}")
    out = run(root, seeds, args.only)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2, default=float))


if __name__ == "__main__":
    main()
