"""Dataset recipes turn an official layout into a manifest that ingests; checked on a tiny fake ESC-50."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mmpt.store.dataset import open_dataset
from mmpt.store.ingest import ingest
from tests.recipe_support import data_info, load_recipe, run_recipe


def fake_esc50(root: Path, missing: str | None = None) -> dict[str, bytes]:
    """Five clips in the official layout: audio/*.wav (44.1 kHz PCM16) and meta/esc50.csv."""
    (root / "audio").mkdir(parents=True)
    (root / "meta").mkdir()
    rows = [
        ("1-100032-A-0.wav", 1, 0, "dog", "True", 100032, "A"),
        ("2-100038-A-14.wav", 2, 14, "chirping_birds", "False", 100038, "A"),
        ("3-100210-A-36.wav", 3, 36, "vacuum_cleaner", "False", 100210, "A"),
        ("4-102844-A-49.wav", 4, 49, "hand_saw", "False", 102844, "A"),
        ("5-103415-A-2.wav", 5, 2, "pig", "False", 103415, "A"),
    ]
    written = {}
    for k, (name, *_rest) in enumerate(rows):
        if name == missing:
            continue
        buf = io.BytesIO()
        tone = 0.1 * np.sin(np.arange(4410) * (k + 1) * 0.05).astype("float32")
        sf.write(buf, tone, 44_100, format="WAV", subtype="PCM_16")
        (root / "audio" / name).write_bytes(buf.getvalue())
        written[Path(name).stem] = buf.getvalue()
    with (root / "meta" / "esc50.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["filename", "fold", "target", "category", "esc10", "src_file", "take"])
        writer.writerows(rows)
    return written


def test_esc50_recipe_manifest_ingests(tmp_path):
    recipe = load_recipe("esc50")
    clips = fake_esc50(tmp_path / "ESC-50-master")
    manifest = tmp_path / "out" / "manifest.csv"
    counts = recipe.convert(tmp_path / "ESC-50-master", manifest)
    assert counts["rows"] == 5 and counts["splits"] == {"train": 3, "val": 1, "test": 1}
    assert counts["missing_files"] == 0
    result = ingest(manifest, tmp_path / "esc50.lance", quiet=True)
    assert result.written == 5 and not result.rejected
    ds = open_dataset(tmp_path / "esc50.lance")
    table = ds.lance.to_table(columns=["id", "text", "label", "split", "fold", "target", "esc10"]).to_pylist()
    assert [r["id"] for r in table] == list(clips)
    assert table[1]["label"] == "chirping birds" and table[1]["text"] == "the sound of chirping birds"
    assert [r["split"] for r in table] == ["train", "train", "train", "val", "test"]
    assert [r["fold"] for r in table] == [1, 2, 3, 4, 5] and table[3]["target"] == 49
    assert ds.read_blobs("audio", range(5)) == list(clips.values())
    assert ds.modalities() == {"audio", "text"}


def test_esc50_recipe_command_line_into_lance_with_a_missing_clip(tmp_path):
    """`python datasets/esc50.py ROOT --out D.lance` then `mmpt data info D.lance`: counts, card, report."""
    fake_esc50(tmp_path / "esc", missing="3-100210-A-36.wav")
    out = tmp_path / "esc50.lance"
    proc = run_recipe("esc50", tmp_path / "esc", "--out", out, "--val-fold", "0")
    assert proc.returncode == 0, proc.stderr
    assert "ESC-50: 5 rows (test 1, train 4); 1 files not found" in proc.stderr
    assert f"wrote 4 rows to {out}" in proc.stderr
    info = data_info(out)
    assert info["rows"] == 4 and info["splits"] == {"test": 1, "train": 3}
    assert info["by_split"]["train"] == {"rows": 3, "audio": 3, "text": 3}
    assert info["card"]["license"] == "CC BY-NC 3.0" and info["card"]["name"] == "ESC-50"
    report = json.loads((tmp_path / "esc50.report.json").read_text())
    assert [r["kind"] for r in report["rejected"]] == ["missing_file"]
    assert (tmp_path / "esc50.manifest.jsonl").is_file()
    again = run_recipe("esc50", tmp_path / "esc", "--out", out)
    assert again.returncode != 0 and again.stderr.strip().count("\n") == 0 and "error:" in again.stderr


def test_esc50_recipe_refuses_another_layout(tmp_path):
    recipe = load_recipe("esc50")
    (tmp_path / "audio").mkdir()
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "ESC50.csv").write_text("x\n")
    with pytest.raises(SystemExit, match=r"meta/esc50.csv not found; expected .* found in .*: ESC50.csv"):
        recipe.convert(tmp_path, tmp_path / "m.csv")
