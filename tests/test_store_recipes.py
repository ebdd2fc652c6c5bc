"""Dataset recipes turn an official layout into a manifest that ingests; checked on a tiny fake ESC-50."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mmpt.store import recipes
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
    # numeric metadata columns are typed as a CSV manifest's would be (the esc50 protocol reads `fold`)
    assert info["metadata_columns"]["fold"] == "int64" and info["metadata_columns"]["esc10"] == "string"
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


# --- the helpers recipes share ------------------------------------------------------------------------------


def test_report_prints_warnings_first_and_notes_on_the_closing_line(tmp_path, capsys):
    counts = {"rows": 3, "splits": {"train": 2, "val": 1}, "missing_files": 1, "written": 2}
    recipes.report(
        "Corpus", tmp_path / "c.lance", {**counts, "warnings": ["one", "two"], "notes": ["n1", "n2"]}
    )
    lines = capsys.readouterr().err.splitlines()
    assert lines[:2] == ["warning: one", "warning: two"] and len(lines) == 3
    assert lines[2].startswith("Corpus: 3 rows (train 2, val 1); 1 files not found")
    assert lines[2].endswith(f"; wrote 2 rows to {tmp_path / 'c.lance'}; n1; n2")
    recipes.report("Corpus", tmp_path / "m.csv", {"rows": 1, "splits": {"auto": 1}})
    assert capsys.readouterr().err == f"Corpus: 1 rows (auto 1); manifest {tmp_path / 'm.csv'}\n"


def test_finish_keeps_notes_and_warnings_in_the_counts(tmp_path):
    rows = [{"id": "a", "text": "a caption", "split": "train"}]
    card = recipes.Card(name="Tiny", license="CC0", homepage="https://example.org", modalities="text")
    counts = recipes.finish(rows, tmp_path / "m.jsonl", card, notes=["a note"], warnings=[])
    assert counts["notes"] == ["a note"] and counts["warnings"] == [] and counts["rows"] == 1
    assert "notes" not in recipes.finish(rows, tmp_path / "m.jsonl", card)


def test_read_csv_falls_back_to_another_encoding_or_refuses_in_one_line(tmp_path):
    path = tmp_path / "meta.csv"
    path.write_bytes("file_name,author\na.wav,José Ñoño\n".encode("iso-8859-1"))
    assert recipes.read_csv(path, ("file_name",), fallback="iso-8859-1") == [
        {"file_name": "a.wav", "author": "José Ñoño"}
    ]
    with pytest.raises(
        SystemExit, match=r"meta.csv is not utf-8-sig text \(byte 26: invalid continuation byte\)$"
    ):
        recipes.read_csv(path, ("file_name",))
    path.write_bytes("\ufeff file_name \tauthor\r\nb.wav\tÅsa\r\n".encode())
    assert recipes.read_csv(path, ("file_name",), delimiter="\t", fallback="iso-8859-1") == [
        {"file_name": "b.wav", "author": "Åsa"}
    ]
    with pytest.raises(SystemExit, match=r"meta.csv lacks columns caption; found file_name, author$"):
        recipes.read_csv(path, ("file_name", "caption"), delimiter="\t")


def test_read_json_and_karpathy_files_refuse_other_shapes_in_one_line(tmp_path):
    path = tmp_path / "dataset_coco.json"
    images = [{"filename": "a.jpg", "cocoid": 1, "split": "restval"}, {"filename": "b.jpg", "split": "test"}]
    path.write_text(json.dumps({"images": images}))
    assert recipes.read_json(path, "images")["images"] == images
    with pytest.raises(
        SystemExit, match=r'dataset_coco.json is not in the expected format: no top-level "data"'
    ):
        recipes.read_json(path, "images", "data")
    assert [recipes.KARPATHY_SPLITS[i["split"]] for i in recipes.read_karpathy(path, "filename")] == [
        "train",
        "test",
    ]
    with pytest.raises(SystemExit, match=r'has an image without "split", "cocoid": \{.filename.: .b.jpg.'):
        recipes.read_karpathy(path, "cocoid")
    path.write_text(json.dumps([images]))
    with pytest.raises(SystemExit, match=r'is not a Karpathy split file: no top-level "images" list'):
        recipes.read_karpathy(path)
    path.write_text("{not json")
    with pytest.raises(SystemExit, match=r"cannot read .*dataset_coco.json: Expecting property name"):
        recipes.read_json(path)


def test_media_index_by_stem_sorted_recursive_or_not(tmp_path):
    for name in ("b/clip.mp4", "a/clip.MKV", "clip.webm", "other.mp4", "notes.txt", "a/deep/x.mov"):
        (tmp_path / "v" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "v" / name).write_bytes(b"")
    (tmp_path / "v" / "dir.mp4").mkdir()
    index = recipes.media_index(tmp_path / "v", (".mp4", ".mkv", ".webm", ".mov"))
    assert sorted(index) == ["clip", "other", "x"]
    assert index["clip"] == [tmp_path / "v" / n for n in ("a/clip.MKV", "b/clip.mp4", "clip.webm")]
    flat = recipes.media_index(tmp_path / "v", (".mp4", ".webm"), recursive=False)
    assert flat == {"clip": [tmp_path / "v" / "clip.webm"], "other": [tmp_path / "v" / "other.mp4"]}
    assert recipes.media_index(tmp_path / "absent", (".mp4",)) == {}


def test_unique_ids_fold_split_and_comma_list():
    rows = [{"id": "a"}, {"id": "b"}, {"id": "a"}, {"id": "a"}]
    assert [r["id"] for r in recipes.unique_ids(rows)] == ["a", "b", "a#1", "a#2"]
    assert [recipes.fold_split(f, 4, 5) for f in (1, 4, 5)] == ["train", "val", "test"]
    assert [recipes.fold_split(f, 0, 1) for f in (1, 2)] == ["test", "train"]
    assert recipes.comma_list(" a, b,,c ") == ["a", "b", "c"]
    assert recipes.comma_list(None) == [] and recipes.comma_list(" , ") == []
