"""The committed demo model (models/emanet_demo.pth) scores what its model card says, on held-out
street scenes generated fresh by the same command the card lists."""
import json
import re
import subprocess
import sys

import pytest

from conftest import ROOT

DEMO = ROOT / "models" / "emanet_demo.pth"
CARD = ROOT / "models" / "README.md"
# Evaluation is deterministic on one machine; the margin covers other CPUs' float rounding
# (a few flipped boundary pixels), not a weaker model.
MARGIN = 0.5


def card_miou() -> float:
    match = re.search(r"held-out mIoU: \*\*([0-9.]+)\*\*", CARD.read_text())
    assert match, "models/README.md must state 'held-out mIoU: **NN.NN**'"
    return float(match.group(1))


@pytest.mark.slow
def test_demo_model_scores_its_model_card(tmp_path):
    assert DEMO.exists(), "models/emanet_demo.pth is committed with the project"
    data = tmp_path / "heldout"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_synthetic.py"), "--out", str(data), "--train", "0",
                    "--val", "100", "--size", "256x512", "--seed", "1", "--quiet"], check=True, capture_output=True)
    out = tmp_path / "result.json"
    result = subprocess.run([sys.executable, str(ROOT / "python" / "evaluate.py"), "--checkpoint", str(DEMO),
                             "--data-root", str(data), "--device", "cpu", "--workers", "0", "--json", str(out)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    miou = json.loads(out.read_text())["mIoU"]
    assert miou >= card_miou() - MARGIN, (miou, card_miou())
