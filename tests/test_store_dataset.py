"""open_dataset, the dataset handle, `mmpt data info` and preview on real Lance datasets."""

from __future__ import annotations

import json
from pathlib import Path

import lance
import numpy as np
import pyarrow as pa
import pytest

from mmpt.cli import main
from mmpt.errors import DataError
from mmpt.store.dataset import open_dataset
from mmpt.store.ingest import ingest
from mmpt.store.synthetic import make_demo_dataset


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_open_errors_are_one_line_data_errors(tmp_path):
    with pytest.raises(DataError, match="dataset not found"):
        open_dataset(tmp_path / "nope.lance")
    (tmp_path / "folder").mkdir()
    with pytest.raises(DataError, match="is not a Lance dataset"):
        open_dataset(tmp_path / "folder")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(DataError, match="is not a Lance dataset"):
        open_dataset(tmp_path / "file.txt")
    lance.write_dataset(pa.table({"x": [1, 2]}), tmp_path / "plain.lance")
    with pytest.raises(DataError, match="not an mmpt one"):
        open_dataset(tmp_path / "plain.lance")


def test_corrupt_manifest_becomes_a_data_error(tmp_path):
    ds = make_demo_dataset(tmp_path / "c.lance", n_rows=5)
    with pytest.raises(DataError, match="no version"):
        open_dataset(ds.uri, version=7)
    for manifest in (tmp_path / "c.lance" / "_versions").iterdir():
        manifest.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(DataError) as info:
        open_dataset(tmp_path / "c.lance")
    assert "\n" not in str(info.value)


def test_split_indices_modalities_and_blobs(demo_dataset):
    splits = demo_dataset.lance.to_table(columns=["split"]).column(0).to_pylist()
    for name in ("train", "val", "test"):
        idx = demo_dataset.split_indices(name)
        assert idx.dtype == np.int64
        assert idx.tolist() == [k for k, s in enumerate(splits) if s == name]
    assert demo_dataset.split_indices(None).tolist() == list(range(len(splits)))
    assert demo_dataset.split_indices("nope").size == 0
    assert demo_dataset.modalities() == {"image", "text", "audio"}
    val = demo_dataset.split_indices("val")[:5]
    blobs = demo_dataset.read_blobs("image", val[::-1])
    assert blobs[::-1] == demo_dataset.read_blobs("image", val)
    assert all(demo_dataset.verify("audio", range(20)))
    with pytest.raises(DataError):
        demo_dataset.read_blobs("text", [0])


def test_modalities_of_a_text_only_dataset(tmp_path):
    import pandas as pd

    ds = ingest(pd.DataFrame({"text": ["a", "b"]}), tmp_path / "t.lance", quiet=True).dataset
    assert ds.modalities() == {"text"}
    assert ds.read_blobs("image", [0, 1]) == [None, None]


def test_stats_match_a_direct_count(demo_dataset):
    stats = demo_dataset.stats()
    table = demo_dataset.lance.to_table(
        columns=["text", "image_sha256", "audio_sha256", "label", "split"]
    ).to_pylist()
    assert stats["rows"] == len(table) == 300
    has = {
        "image": [r["image_sha256"] is not None for r in table],
        "text": [r["text"] is not None for r in table],
        "audio": [r["audio_sha256"] is not None for r in table],
    }
    assert stats["modalities"] == {m: sum(v) for m, v in has.items()}
    combos: dict[str, int] = {}
    for k in range(len(table)):
        key = "+".join(m for m in ("image", "text", "audio") if has[m][k])
        combos[key] = combos.get(key, 0) + 1
    assert stats["combinations"] == combos
    assert sum(stats["combinations"].values()) == 300
    assert stats["splits"] == {s: sum(r["split"] == s for r in table) for s in ("test", "train", "val")}
    assert sum(stats["labels"].values()) == 300 and len(stats["labels"]) == 20
    assert stats["versions"][0]["version"] == 1 and stats["size_bytes"] > 300 * 10_000
    assert stats["embedding_columns"] == {} and stats["metadata_columns"] == {
        "colour": "string",
        "shape": "string",
    }


def test_data_info_cli_after_append_tag_and_embedding_column(tmp_path, capsys):
    import pandas as pd

    out = tmp_path / "i.lance"
    ingest(
        pd.DataFrame(
            {
                "id": ["a", "b", "c"],
                "text": ["x", "y", "z"],
                "label": ["p", "q", "p"],
                "split": ["train", "train", "test"],
            }
        ),
        out,
        quiet=True,
    )
    ingest(
        pd.DataFrame({"id": ["d"], "text": ["w"], "label": ["q"], "split": ["val"]}),
        out,
        append=True,
        quiet=True,
    )
    lds = lance.dataset(str(out))
    lds.tags.create("first", 1)
    lds.add_columns(pa.field("emb_run1_text", pa.list_(pa.float32(), 4)))
    code, text, _ = run_cli(["data", "info", str(out), "--json"], capsys)
    assert code == 0
    stats = json.loads(text)
    assert stats["rows"] == 4
    assert stats["modalities"] == {"image": 0, "text": 4, "audio": 0}
    assert stats["combinations"] == {"text": 4}
    assert stats["splits"] == {"test": 1, "train": 2, "val": 1}
    assert stats["labels"] == {"p": 2, "q": 2}
    assert [v["version"] for v in stats["versions"]] == [1, 2, 3]
    assert stats["versions"][0]["tag"] == "first"
    assert stats["embedding_columns"] == {"emb_run1_text": 4}
    code, text, _ = run_cli(["data", "info", str(out)], capsys)
    assert code == 0 and "rows      4" in text and "tag first" in text and "emb_run1_text [4]" in text
    code, text, _ = run_cli(["data", "info", str(out), "--version", "first", "--json"], capsys)
    assert json.loads(text)["rows"] == 3
    # Appending after an embedding column was added still works (the new rows get nulls there).
    ingest(
        pd.DataFrame({"id": ["e"], "text": ["v"], "label": ["p"], "split": ["val"]}),
        out,
        append=True,
        quiet=True,
    )
    assert len(open_dataset(out)) == 5


def test_cli_errors_are_one_line(tmp_path, capsys, demo_files):
    code, _, err = run_cli(["data", "info", str(tmp_path / "missing.lance")], capsys)
    assert code == 1 and err.strip() == f"error: dataset not found: {tmp_path / 'missing.lance'}"
    (tmp_path / "folder").mkdir()
    code, _, err = run_cli(["data", "info", str(tmp_path / "folder")], capsys)
    assert code == 1 and len(err.strip().splitlines()) == 1 and "not a Lance dataset" in err
    code, _, err = run_cli(["ingest", str(tmp_path / "none.csv"), "--out", str(tmp_path / "o.lance")], capsys)
    assert code == 1 and err.strip().splitlines()[-1].startswith("error: source not found")
    code, _, err = run_cli(
        ["ingest", str(demo_files), "--out", str(tmp_path / "o.lance"), "--text-col", "words", "-q"], capsys
    )
    assert code == 1 and "available columns: id, image, audio, text, label, split, colour, shape" in err


def test_ingest_cli_json_and_verify(tmp_path, capsys, demo_files):
    out = tmp_path / "v.lance"
    code, text, _ = run_cli(
        ["ingest", str(demo_files), "--out", str(out), "-q", "--json", "--workers", "1"], capsys
    )
    assert code == 0
    summary = json.loads(text)
    assert (summary["read"], summary["written"], summary["rejected"]) == (40, 40, 0)
    code, text, _ = run_cli(["data", "verify", str(out)], capsys)
    assert code == 0 and "match" in text
    # Corrupt one stored digest: verify names the row.
    lds = lance.dataset(str(out))
    first_image = open_dataset(out).null_mask("image_sha256").argmin()
    bad_id = open_dataset(out).ids([first_image])[0]
    lds.update({"image_sha256": "'0000'"}, where=f"id = '{bad_id}'")
    code, _, err = run_cli(["data", "verify", str(out)], capsys)
    assert code == 1 and bad_id in err


def test_preview_renders_thumbnails_players_and_captions(demo_dataset):
    html = demo_dataset.preview(6, split="train")
    train = demo_dataset.split_indices("train")[:6]
    rows = demo_dataset.take(train, columns=["id", "text"]).to_pylist()
    images = demo_dataset.read_blobs("image", train)
    audios = demo_dataset.read_blobs("audio", train)
    assert html.count("<tr>") == 7  # header + 6 rows
    assert html.count("data:image/png;base64,") == sum(b is not None for b in images)
    assert html.count('<audio controls preload="none" src="data:audio/wav;base64,') == sum(
        b is not None for b in audios
    )
    for row in rows:
        assert row["id"] in html
        if row["text"]:
            assert row["text"] in html
    assert demo_dataset._repr_html_().startswith("<table")
    assert html._repr_html_() == str(html)


def test_preview_of_undecodable_and_long_audio(tmp_path):
    import io

    import pandas as pd
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.zeros((16_000 * 20, 1), dtype="float32"), 16_000, format="FLAC")
    flac = buf.getvalue()
    ds = ingest(
        pd.DataFrame({"id": ["f"], "audio": [flac], "text": ["long"]}), tmp_path / "p.lance", quiet=True
    ).dataset
    html = ds.preview(1)
    assert "data:audio/flac;base64," in html or "data:audio/wav;base64," in html


def test_open_dataset_exposes_lance_for_other_tools(demo_dataset):
    duckdb = pytest.importorskip("duckdb")
    lds = demo_dataset.lance
    assert isinstance(lds, lance.LanceDataset)
    arrow = lds.to_table(columns=["label", "split"])
    count = duckdb.from_arrow(arrow).filter("split = 'train'").aggregate("count(*)").fetchall()[0][0]
    assert count == len(demo_dataset.split_indices("train"))
    assert Path(demo_dataset.uri).exists() and demo_dataset.version == 1
