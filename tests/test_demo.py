"""`mmpt demo` at a small size, as a user runs it: every modality learns (issue: image zero-shot sat at ~0.25,
colour right and shape at chance, while audio learnt)."""

from __future__ import annotations

import json
import subprocess
import sys

# 20 classes (4 shapes x 5 colours): chance is 0.05, and a model that learns only colour (or only shape) tops
# out at 0.25 (1/4 of the shapes, or 1/5 of the colours) -- where the image side sat before the conv tower.
# At this size (1,000 rows, batch 32, the demo's 18 epochs: 450 steps, ~45 s) the demo measured image 0.51 and
# audio 0.92 (the full demo: 0.96 / 1.00). 0.35 fails a model that learns one attribute only.
MIN_ACCURACY = 0.35


def test_small_demo_learns_image_and_audio(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "mmpt", "demo", "--out", str(tmp_path), "--rows", "1000"]
        + ["--batch-size", "32", "--quiet"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert "lance is not fork-safe" not in done.stderr  # the loader's forkserver never warns the user
    final = json.loads((tmp_path / "run" / "eval" / "final.json").read_text())
    for modality in ("image", "audio"):
        zero_shot = final["zero_shot"][modality]
        assert len(zero_shot["classes"]) == 20
        assert zero_shot["accuracy"] >= MIN_ACCURACY, (modality, zero_shot["accuracy"])
    # the before/after table and the search hits are what a user reads
    assert "zero-shot image accuracy" in done.stdout and "zero-shot audio accuracy" in done.stdout
    assert 'top-5 audio for "' in done.stdout
