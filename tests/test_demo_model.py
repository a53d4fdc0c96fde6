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


# Per class, a few hundred pixels of a thin class can move its IoU by more than the mean's.
CLASS_MARGIN = 2.0
# The demo-model issue's targets, which the committed model meets (the card's table): held-out
# mIoU >= 40, and each of the thin and rare classes it named at IoU >= 15.
TARGET_MIOU = 40.0
LEARNT_RARE = ("person", "pole", "terrain", "truck", "bus", "fence")


def card_class_ious() -> dict[str, float]:
    """The card's held-out table: rows '| class | IoU | pixels% | previous model's IoU |'."""
    rows = re.findall(r"^\| ([a-z ]+) \| ([0-9.]+) \| [0-9.]+% \| [0-9.]+ \|$", CARD.read_text(), flags=re.M)
    assert len(rows) == 19, "models/README.md must list the 19 classes' held-out IoU"
    return {name: float(value) for name, value in rows}


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
    scores = json.loads(out.read_text())
    miou = scores["mIoU"]
    assert miou >= card_miou() - MARGIN, (miou, card_miou())
    assert miou >= TARGET_MIOU, miou
    measured = {name: row["IoU"] for name, row in scores["per_class"].items()}
    card = card_class_ious()
    low = {c: (round(measured[c], 2), card[c]) for c in card if measured[c] < card[c] - CLASS_MARGIN}
    assert not low, f"classes below their model card IoU: {low}"
    assert all(measured[c] >= 15 for c in LEARNT_RARE), {c: round(measured[c], 2) for c in LEARNT_RARE}
