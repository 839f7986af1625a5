"""The demo runs: on the simulator (no data needed) and on the real IoT-23 Mirai scenario."""

from __future__ import annotations

from pathlib import Path

import pytest

from misuse.demo import run_iot23
from misuse.errors import ParseError


@pytest.mark.realdata
def test_iot23_demo_follows_the_protocol(shared_data: Path, tmp_path: Path) -> None:
    result = run_iot23(shared_data / "iot23", tmp_path, seed=0)
    m = result.metrics
    flows = m["flows"]
    # test = 34-1 from the first malicious flow on: all malicious flows and the benign ones after it
    assert flows["malicious_flows"] == 14_394 + 6_706 + 122
    assert flows["benign_flows"] > 0
    # the window model ranks the infected device's windows well above benign ones ...
    assert m["windows"]["roc_auc"] > 0.9
    # ... and its training-set threshold keeps false alarms on test benign flows low
    assert flows["fpr"] <= 0.05
    assert result.report.exists()


def test_iot23_demo_names_a_wrong_folder(tmp_path: Path) -> None:
    with pytest.raises(ParseError, match="not an IoT-23 folder"):
        run_iot23(tmp_path, tmp_path / "out")
