"""Ingest from every source kind into real Lance datasets: bytes round-trip, bad rows, strict, append, splits."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path

import lance
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mmpt.errors import DataError
from mmpt.store.dataset import open_dataset
from mmpt.store.ingest import ingest, report_path_for
from mmpt.store.splits import split_for_id


def read_manifest(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def copy_files(demo_files: Path, tmp_path: Path) -> Path:
    """A private copy of the demo media + manifest that a test may corrupt."""
    target = tmp_path / "files"
    shutil.copytree(demo_files.parent, target)
    return target / "manifest.csv"


def assert_round_trip(ds, manifest_rows: list[dict[str, str]], base: Path) -> None:
    """Every written row's blobs equal the files' bytes and match their stored sha256."""
    table = ds.lance.to_table(columns=["id", "image_sha256", "audio_sha256"]).to_pylist()
    by_id = {r["id"]: r for r in manifest_rows}
    positions = list(range(len(table)))
    for modality in ("image", "audio"):
        blobs = ds.read_blobs(modality, positions)
        for row, blob in zip(table, blobs, strict=True):
            ref = by_id[row["id"]][modality]
            if not ref:
                assert blob is None and row[f"{modality}_sha256"] is None
                continue
            expected = (base / ref).read_bytes()
            assert blob == expected
            assert row[f"{modality}_sha256"] == hashlib.sha256(blob).hexdigest()


def test_csv_round_trip_keeps_bytes_metadata_and_splits(demo_files, tmp_path):
    result = ingest(demo_files, tmp_path / "c.lance", quiet=True)
    rows = read_manifest(demo_files)
    assert (result.read, result.written, result.rejected) == (40, 40, [])
    ds = open_dataset(tmp_path / "c.lance")
    assert_round_trip(ds, rows, demo_files.parent)
    table = ds.lance.to_table(
        columns=["id", "text", "label", "split", "colour", "shape", "source"]
    ).to_pylist()
    assert [r["id"] for r in table] == [r["id"] for r in rows]
    for got, want in zip(table, rows, strict=True):
        assert got["text"] == (want["text"] or None)
        assert (got["label"], got["split"], got["colour"], got["shape"]) == (
            want["label"],
            want["split"],
            want["colour"],
            want["shape"],
        )
        assert got["source"].startswith(str(demo_files.parent))
    report = json.loads(Path(result.report_path).read_text())
    assert report["totals"] == {"read": 40, "written": 40, "rejected": 0}
    assert result.report_path == str(tmp_path / "c.report.json")


def test_jsonl_with_absolute_paths_and_renamed_columns(demo_files, tmp_path):
    rows = read_manifest(demo_files)
    path = tmp_path / "m.jsonl"
    with path.open("w") as handle:
        for r in rows[:15]:
            handle.write(
                json.dumps(
                    {
                        "key": r["id"],
                        "caption": r["text"] or None,
                        "cls": r["label"],
                        "img": str(demo_files.parent / r["image"]) if r["image"] else None,
                        "snd": str(demo_files.parent / r["audio"]) if r["audio"] else None,
                        "score": 0.5,
                        "n": 3,
                    }
                )
                + "\n"
            )
    ingest(
        path,
        tmp_path / "j.lance",
        id_col="key",
        image_col="img",
        audio_col="snd",
        label_col="cls",
        quiet=True,
    )
    ds = open_dataset(tmp_path / "j.lance")
    assert_round_trip(ds, rows[:15], demo_files.parent)
    table = ds.lance.to_table(columns=["id", "text", "label", "split", "score", "n"]).to_pylist()
    assert [r["label"] for r in table] == [r["label"] for r in rows[:15]]
    assert [r["text"] for r in table] == [r["text"] or None for r in rows[:15]]  # found via "caption"
    assert all(r["split"] == split_for_id(r["id"]) for r in table)  # no split column: hashed
    assert ds.schema.field("score").type == pa.float64() and ds.schema.field("n").type == pa.int64()


def test_parquet_with_relative_paths(demo_files, tmp_path):
    rows = read_manifest(demo_files)
    frame = pd.DataFrame(rows[:12]).replace("", None)
    # Parquet next to the media: paths are relative to the manifest's folder.
    target = copy_files(demo_files, tmp_path).parent / "m.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), target)
    ingest(target, tmp_path / "p.lance", quiet=True)
    ds = open_dataset(tmp_path / "p.lance")
    assert len(ds) == 12
    assert_round_trip(ds, rows[:12], demo_files.parent)


def test_folder_tree_pairs_by_stem_and_labels_from_folders(tmp_path, demo_dataset):
    root = tmp_path / "tree"
    table = demo_dataset.lance.to_table(columns=["id", "text", "label"], limit=12).to_pylist()
    images = demo_dataset.read_blobs("image", range(12))
    audios = demo_dataset.read_blobs("audio", range(12))
    expected = {}
    for k, row in enumerate(table):
        split = ("train", "val", "test")[k % 3]
        folder = root / split / row["label"].replace(" ", "_")
        folder.mkdir(parents=True, exist_ok=True)
        if images[k] is not None:
            (folder / f"{row['id']}.png").write_bytes(images[k])
        if audios[k] is not None:
            (folder / f"{row['id']}.wav").write_bytes(audios[k])
        if row["text"] is not None:
            (folder / f"{row['id']}.txt").write_text(row["text"] + "\n", encoding="utf-8")
        expected[f"{split}/{row['label'].replace(' ', '_')}/{row['id']}"] = (split, k, row)
    result = ingest(root, tmp_path / "t.lance", quiet=True)
    assert result.written == 12 and not result.rejected
    ds = open_dataset(tmp_path / "t.lance")
    got = ds.lance.to_table(columns=["id", "text", "label", "split"]).to_pylist()
    assert sorted(r["id"] for r in got) == sorted(expected)
    for position, r in enumerate(got):
        split, k, row = expected[r["id"]]
        assert (r["split"], r["label"], r["text"]) == (split, row["label"].replace(" ", "_"), row["text"])
        assert ds.read_blobs("image", [position]) == [images[k]]
        assert ds.read_blobs("audio", [position]) == [audios[k]]


def test_folder_tree_without_split_folders_and_with_unknown_files(tmp_path, demo_dataset):
    root = tmp_path / "tree"
    (root / "cats").mkdir(parents=True)
    (root / "dogs").mkdir()
    (root / "cats" / "a.png").write_bytes(demo_dataset.read_blobs("image", [1])[0])
    (root / "dogs" / "b.wav").write_bytes(demo_dataset.read_blobs("audio", [1])[0])
    (root / "dogs" / "notes.json").write_text("{}")
    result = ingest(root, tmp_path / "t.lance", quiet=True)
    assert result.written == 2
    assert [(r["row"], r["kind"]) for r in result.rejected] == [(2, "no_modality")]
    assert result.rejected[0]["source"].endswith("notes.json")
    labels = open_dataset(tmp_path / "t.lance").lance.to_table(columns=["id", "label"]).to_pylist()
    assert labels == [{"id": "cats/a", "label": "cats"}, {"id": "dogs/b", "label": "dogs"}]


def test_uris_for_media_and_manifest(demo_files, tmp_path):
    rows = read_manifest(demo_files)[:6]
    path = tmp_path / "uris.csv"
    frame = pd.DataFrame(
        {
            "id": [r["id"] for r in rows],
            "image": [(demo_files.parent / r["image"]).as_uri() if r["image"] else None for r in rows],
            "audio": [(demo_files.parent / r["audio"]).as_uri() if r["audio"] else None for r in rows],
        }
    )
    frame.loc[5, "image"] = (tmp_path / "gone.png").as_uri()
    frame.to_csv(path, index=False)
    result = ingest(path.as_uri(), tmp_path / "u.lance", quiet=True)
    assert result.written == 5 and [r["kind"] for r in result.rejected] == ["missing_file"]
    assert_round_trip(result.dataset, rows[:5], demo_files.parent)
    assert result.dataset.lance.to_table(columns=["source"]).column(0)[0].as_py().startswith("file://")


def test_dataframe_with_bytes_and_paths(demo_files, tmp_path, demo_dataset):
    rows = read_manifest(demo_files)[:8]
    frame = pd.DataFrame(
        {
            "id": [r["id"] for r in rows],
            "image": [(demo_files.parent / r["image"]).read_bytes() if r["image"] else None for r in rows],
            "audio": [str(demo_files.parent / r["audio"]) if r["audio"] else None for r in rows],
            "text": [r["text"] or None for r in rows],
            "weight": [float(k) for k in range(8)],
        }
    )
    result = ingest(frame, tmp_path / "df.lance", quiet=True)
    assert result.written == 8
    ds = open_dataset(tmp_path / "df.lance")
    assert_round_trip(ds, rows, demo_files.parent)
    assert ds.lance.to_table(columns=["weight"]).column(0).to_pylist() == [float(k) for k in range(8)]


def test_hugging_face_dataset(tmp_path, demo_dataset):
    datasets = pytest.importorskip("datasets", reason="datasets is in the dev extra")
    # Without the package, `import datasets` finds the repo's datasets/ recipes folder (a namespace package).
    assert hasattr(datasets, "Dataset"), "Hugging Face datasets is not installed (pip install datasets)"
    n = 6
    images = demo_dataset.read_blobs("image", range(n))
    audios = demo_dataset.read_blobs("audio", range(n))
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "audio": {"bytes": datasets.Value("binary"), "path": datasets.Value("string")},
            "caption": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["red", "green", "blue"]),
        }
    )
    hf = datasets.Dataset.from_dict(
        {
            "image": [None if b is None else {"bytes": b, "path": None} for b in images],
            "audio": [None if b is None else {"bytes": b, "path": None} for b in audios],
            "caption": [f"caption {k}" for k in range(n)],
            "label": [k % 3 for k in range(n)],
        },
        features=features,
    ).cast_column("audio", datasets.Audio(decode=False))
    result = ingest(hf, tmp_path / "hf.lance", quiet=True)
    assert result.written == n
    ds = open_dataset(tmp_path / "hf.lance")
    assert ds.read_blobs("image", range(n)) == images
    assert ds.read_blobs("audio", range(n)) == audios
    table = ds.lance.to_table(columns=["id", "label", "text"]).to_pylist()
    assert [r["label"] for r in table] == ["red", "green", "blue"] * 2  # ClassLabel ints become names
    assert [r["id"] for r in table] == [f"row-{k:06d}" for k in range(n)]


def make_bad_manifest(demo_files: Path, tmp_path: Path) -> tuple[Path, dict[int, str]]:
    """Copy the demo files and break 5 rows: missing file, truncated image, truncated audio, text as image,
    and a row with no media at all."""
    manifest = copy_files(demo_files, tmp_path)
    base = manifest.parent
    rows = read_manifest(manifest)
    with_image = [k for k, r in enumerate(rows) if r["image"] and r["audio"]]
    bad = {}
    k = with_image[0]
    (base / rows[k]["image"]).unlink()
    bad[k] = "missing_file"
    k = with_image[1]
    data = (base / rows[k]["image"]).read_bytes()
    (base / rows[k]["image"]).write_bytes(data[: len(data) // 2])
    bad[k] = "corrupt_image"
    k = with_image[2]
    data = (base / rows[k]["audio"]).read_bytes()
    (base / rows[k]["audio"]).write_bytes(data[: len(data) // 3])
    bad[k] = "corrupt_audio"
    k = with_image[3]
    (base / rows[k]["image"]).write_text("this is not an image")
    bad[k] = "corrupt_image"
    k = with_image[4]
    rows[k].update(image="", audio="", text="")
    bad[k] = "no_modality"
    with manifest.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return manifest, bad


def test_bad_rows_are_reported_and_skipped(demo_files, tmp_path):
    manifest, bad = make_bad_manifest(demo_files, tmp_path)
    result = ingest(manifest, tmp_path / "b.lance", quiet=True)
    assert (result.read, result.written) == (40, 35)
    report = json.loads(Path(report_path_for(tmp_path / "b.lance")).read_text())
    assert report["totals"] == {"read": 40, "written": 35, "rejected": 5}
    assert {r["row"]: r["kind"] for r in report["rejected"]} == bad
    for item in report["rejected"]:
        assert item["id"] == f"demo-{item['row']:06d}" and item["reason"] and item["source"]
    written = set(open_dataset(tmp_path / "b.lance").ids())
    assert written.isdisjoint({f"demo-{k:06d}" for k in bad}) and len(written) == 35
    assert "rejected 5" in result.summary()


def test_strict_writes_nothing(demo_files, tmp_path):
    manifest, _ = make_bad_manifest(demo_files, tmp_path)
    out = tmp_path / "s.lance"
    with pytest.raises(DataError, match="strict"):
        ingest(manifest, out, strict=True, quiet=True)
    assert not out.exists() and not Path(report_path_for(out)).exists()
    # On append too: the dataset stays at its version.
    ingest(demo_files, out, quiet=True, id_col="id")
    version = open_dataset(out).version
    renamed = tmp_path / "renamed.csv"
    text = manifest.read_text().replace("demo-0", "more-0")
    renamed.write_text(text)
    shutil.copytree(manifest.parent / "images", tmp_path / "images")
    shutil.copytree(manifest.parent / "audio", tmp_path / "audio")
    with pytest.raises(DataError, match="strict"):
        ingest(renamed, out, append=True, strict=True, quiet=True)
    assert open_dataset(out).version == version and len(open_dataset(out)) == 40


def test_append_adds_a_version_and_refuses_duplicates_and_other_schemas(demo_files, tmp_path):
    rows = read_manifest(demo_files)
    out = tmp_path / "a.lance"
    first = tmp_path / "first.csv"
    second = tmp_path / "second.csv"
    for path, part in ((first, rows[:20]), (second, rows[20:])):
        frame = pd.DataFrame(part)
        for col in ("image", "audio"):
            frame[col] = [str(demo_files.parent / v) if v else "" for v in frame[col]]
        frame.to_csv(path, index=False)
    ingest(first, out, quiet=True)
    result = ingest(second, out, append=True, quiet=True)
    ds = open_dataset(out)
    assert len(ds) == 40 and ds.version == 2 and result.dataset.version == 2
    assert ds.ids() == [r["id"] for r in rows]
    assert_round_trip(ds, rows, demo_files.parent)
    with pytest.raises(DataError, match="already in"):
        ingest(second, out, append=True, quiet=True)
    other = tmp_path / "other.csv"
    pd.DataFrame({"id": ["x1"], "text": ["hello"], "mood": ["calm"]}).to_csv(other, index=False)
    with pytest.raises(DataError, match="schema differs"):
        ingest(other, out, append=True, quiet=True)
    assert open_dataset(out).version == 2
    with pytest.raises(DataError, match="already exists"):
        ingest(second, out, quiet=True)
    replaced = ingest(other, out, overwrite=True, quiet=True)
    assert len(replaced.dataset) == 1 and open_dataset(out).version == 3


def test_duplicate_ids_in_the_input_are_refused(tmp_path):
    path = tmp_path / "dup.csv"
    pd.DataFrame({"id": ["a", "b", "a"], "text": ["x", "y", "z"]}).to_csv(path, index=False)
    with pytest.raises(DataError, match="duplicate id 'a' in rows 0 and 2"):
        ingest(path, tmp_path / "d.lance", quiet=True)
    assert not (tmp_path / "d.lance").exists()


def test_splits_are_deterministic_and_follow_ratios(tmp_path):
    ids = [f"item-{k}" for k in range(400)]
    path = tmp_path / "texts.csv"
    pd.DataFrame({"id": ids, "text": [f"text {k}" for k in range(400)]}).to_csv(path, index=False)
    a = ingest(path, tmp_path / "a.lance", quiet=True).dataset
    b = ingest(path, tmp_path / "b.lance", quiet=True).dataset
    split_a = a.lance.to_table(columns=["split"]).column(0).to_pylist()
    assert split_a == b.lance.to_table(columns=["split"]).column(0).to_pylist()
    assert split_a == [split_for_id(i) for i in ids]
    assert 0.72 < split_a.count("train") / 400 < 0.88
    c = ingest(path, tmp_path / "c.lance", split_ratios="0.5,0,0.5", quiet=True).dataset
    split_c = c.lance.to_table(columns=["split"]).column(0).to_pylist()
    assert "val" not in split_c and 0.4 < split_c.count("train") / 400 < 0.6
    with pytest.raises(DataError, match="ratios"):
        ingest(path, tmp_path / "e.lance", split_ratios="0.5,x", quiet=True)


def test_split_names_match_the_schema():
    from mmpt.store import schema, splits

    assert splits.SPLITS == schema.SPLITS
    assert {splits.normalise_split(v) for v in ("Train", "VALIDATION", "dev", "testing")} == set(
        schema.SPLITS
    )


def test_split_column_aliases_and_unknown_values(tmp_path):
    path = tmp_path / "s.csv"
    pd.DataFrame(
        {
            "id": ["a", "b", "c", "d"],
            "text": ["1", "2", "3", "4"],
            "split": ["training", "validation", "", "holdout"],
        }
    ).to_csv(path, index=False)
    result = ingest(path, tmp_path / "s.lance", quiet=True)
    splits = result.dataset.lance.to_table(columns=["split"]).column(0).to_pylist()
    assert splits == ["train", "val", split_for_id("c")]
    assert [(r["id"], r["kind"]) for r in result.rejected] == [("d", "bad_split")]


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "empty"),
        ("id,text\n", "empty"),
    ],
)
def test_empty_sources_fail(tmp_path, content, message):
    path = tmp_path / "e.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        ingest(path, tmp_path / "e.lance", quiet=True)
    assert not (tmp_path / "e.lance").exists()


def test_bad_sources_and_destinations(tmp_path, demo_files):
    with pytest.raises(DataError, match="source not found"):
        ingest(tmp_path / "missing.csv", tmp_path / "x.lance", quiet=True)
    with pytest.raises(DataError, match=r"unknown image column 'pic'; available columns: id, image, audio"):
        ingest(demo_files, tmp_path / "x.lance", image_col="pic", quiet=True)
    path = tmp_path / "nomedia.csv"
    pd.DataFrame({"a": [1], "b": [2]}).to_csv(path, index=False)
    with pytest.raises(DataError, match="no image, audio or text column.*available columns: a, b"):
        ingest(path, tmp_path / "x.lance", quiet=True)
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "file.txt").write_text("x")
    for append in (True, False):
        with pytest.raises(DataError, match="plain is not a Lance dataset"):
            ingest(demo_files, tmp_path / "plain", append=append, quiet=True)
    assert [p.name for p in (tmp_path / "plain").iterdir()] == ["file.txt"]
    (tmp_path / "m.xlsx").write_text("x")
    with pytest.raises(DataError, match="unsupported manifest type"):
        ingest(tmp_path / "m.xlsx", tmp_path / "x.lance", quiet=True)
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(DataError, match="empty"):
        ingest(tmp_path / "empty_dir", tmp_path / "x.lance", quiet=True)
    assert not (tmp_path / "x.lance").exists()


def test_all_rows_rejected_is_an_error_with_a_report(tmp_path):
    path = tmp_path / "bad.csv"
    pd.DataFrame({"id": ["a", "b"], "image": ["nope1.png", "nope2.png"]}).to_csv(path, index=False)
    with pytest.raises(DataError, match="all 2 rows were rejected"):
        ingest(path, tmp_path / "bad.lance", quiet=True)
    report = json.loads((tmp_path / "bad.report.json").read_text())
    assert report["totals"] == {"read": 2, "written": 0, "rejected": 2}
    assert not (tmp_path / "bad.lance").exists()


def test_text_validation_and_ids_without_an_id_column(tmp_path):
    texts = ["fine", "  ", "bad \udc80 surrogate", "ok", b"caf\xc3\xa9", b"\xff\xfe broken"]
    frame = pd.DataFrame({"text": pd.Series(texts, dtype=object)})
    result = ingest(frame, tmp_path / "t.lance", quiet=True)
    assert result.dataset.ids() == ["row-000000", "row-000003", "row-000004"]
    assert result.dataset.lance.to_table(columns=["text"]).column(0).to_pylist() == ["fine", "ok", "café"]
    assert {r["row"]: r["kind"] for r in result.rejected} == {1: "no_modality", 2: "bad_text", 5: "bad_text"}


def test_process_pool_gives_the_same_dataset(demo_files, tmp_path):
    a = ingest(demo_files, tmp_path / "a.lance", workers=1, batch_rows=7, quiet=True).dataset
    b = ingest(demo_files, tmp_path / "b.lance", workers=2, batch_rows=7, quiet=True).dataset
    cols = ["id", "text", "label", "split", "image_sha256", "audio_sha256", "colour"]
    assert a.lance.to_table(columns=cols).equals(b.lance.to_table(columns=cols))


def test_a_failure_mid_stream_leaves_the_previous_version(demo_files, tmp_path, monkeypatch):
    out = tmp_path / "f.lance"
    ingest(demo_files, out, quiet=True)
    renamed = tmp_path / "more.csv"
    frame = pd.read_csv(demo_files, keep_default_na=False)
    frame["id"] = "more-" + frame["id"]
    for col in ("image", "audio"):
        frame[col] = [str(demo_files.parent / v) if v else "" for v in frame[col]]
    frame.to_csv(renamed, index=False)

    import mmpt.store.ingest as ingest_module

    calls = {"n": 0}
    real = ingest_module.rows_to_batch

    def failing(rows, schema):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("disk on fire")
        return real(rows, schema)

    monkeypatch.setattr(ingest_module, "rows_to_batch", failing)
    with pytest.raises(RuntimeError, match="disk on fire"):
        ingest(renamed, out, append=True, batch_rows=5, workers=1, quiet=True)
    ds = open_dataset(out)
    assert (ds.version, len(ds)) == (1, 40)
    assert len(lance.dataset(str(out)).versions()) == 1
    # A failed create leaves no folder behind.
    calls["n"] = 0
    with pytest.raises(RuntimeError):
        ingest(renamed, tmp_path / "new.lance", batch_rows=5, workers=1, quiet=True)
    assert not (tmp_path / "new.lance").exists()
