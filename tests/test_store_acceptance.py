"""The acceptance: 100 manifest rows with a corrupt image, two corrupt audio files and two missing files ->
95 rows written, the report names each failing file by its own path (not the row's other file), with its
modality and reason, and `mmpt data info --json` shows the counts."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from mmpt.cli import main
from mmpt.store.synthetic import demo_rows


def test_hundred_rows_five_bad(tmp_path, capsys):
    media = tmp_path / "media"
    media.mkdir()
    rows = []
    for row in demo_rows(100, seed=7):
        image = audio = ""
        if row["image"] is not None:
            image = f"media/{row['id']}.png"
            (tmp_path / image).write_bytes(row["image"])
        if row["audio"] is not None:
            audio = f"media/{row['id']}.wav"
            (tmp_path / audio).write_bytes(row["audio"])
        rows.append(
            {
                "id": row["id"],
                "image": image,
                "audio": audio,
                "text": row["text"] or "",
                "label": row["label"],
            }
        )
    full = [k for k, r in enumerate(rows) if r["image"] and r["audio"]]
    # row -> (kind, words in the reason, the modality that fails); every bad row also holds a good file of
    # the other modality, so a report that names the row's first path instead of the failing one is caught
    bad = {
        full[0]: ("missing_file", "not found", "image"),
        full[1]: ("missing_file", "not found", "audio"),
        full[2]: ("corrupt_image", "truncated", "image"),
        full[3]: ("corrupt_audio", "truncated", "audio"),
        full[4]: ("corrupt_audio", "does not decode", "audio"),
    }
    (tmp_path / rows[full[0]]["image"]).unlink()
    (tmp_path / rows[full[1]]["audio"]).unlink()
    data = (tmp_path / rows[full[2]]["image"]).read_bytes()
    (tmp_path / rows[full[2]]["image"]).write_bytes(data[:200])
    data = (tmp_path / rows[full[3]]["audio"]).read_bytes()
    (tmp_path / rows[full[3]]["audio"]).write_bytes(data[:5000])
    (tmp_path / rows[full[4]]["audio"]).write_bytes(b"%PDF-1.4 not audio at all" * 4)
    manifest = tmp_path / "manifest.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    out = tmp_path / "corpus.lance"
    try:
        main(["ingest", str(manifest), "--out", str(out), "-q"])
    except SystemExit as exc:  # pragma: no cover - a failure shows its stderr below
        raise AssertionError(capsys.readouterr().err) from exc
    summary = capsys.readouterr().out
    assert "ingested 95 of 100 rows" in summary and "rejected 5" in summary

    report = json.loads((tmp_path / "corpus.report.json").read_text())
    assert report["totals"] == {"read": 100, "written": 95, "rejected": 5}
    assert {r["row"] for r in report["rejected"]} == set(bad)
    for item in report["rejected"]:
        kind, words, modality = bad[item["row"]]
        assert item["kind"] == kind and words in item["reason"], item
        assert item["id"] == rows[item["row"]]["id"]
        failing = tmp_path / rows[item["row"]][modality]
        assert item["modality"] == modality and Path(item["file"]) == failing, item
        assert f"{modality} {item['file']}: " in summary  # on screen too, on the row's line

    main(["data", "info", str(out), "--json"])
    info = json.loads(capsys.readouterr().out)
    assert info["rows"] == 95
    good = [r for k, r in enumerate(rows) if k not in bad]
    assert info["modalities"] == {
        "image": sum(bool(r["image"]) for r in good),
        "text": sum(bool(r["text"]) for r in good),
        "audio": sum(bool(r["audio"]) for r in good),
    }
    assert sum(info["splits"].values()) == 95 and sum(info["labels"].values()) == 95
    assert sum(info["combinations"].values()) == 95
