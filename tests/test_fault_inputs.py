"""Hostile inputs at ingest and when a model embeds user-given files: null-looking strings, oversized fields, bad
encodings and bad JSON lines, NFC-equivalent ids, devices / FIFOs / sockets, symlinks out of the source root,
decompression bombs, truncated and lying media headers. Each bad row is rejected with its reason (or kept
exactly), the rest of the source is ingested, and nothing hangs."""

from __future__ import annotations

import csv
import io
import json
import os
import socket
import struct
import unicodedata
import zlib
from pathlib import Path

import fault_tally
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from mmpt.cli import main
from mmpt.errors import DataError
from mmpt.store.ingest import ingest

NULLISH = [
    "NA", "N/A", "n/a", "na", "null", "NULL", "Null", "nan", "NaN", "-nan", "-NaN", "None", "none", "#N/A",
    "#N/A N/A", "#NA", "-1.#IND", "1.#QNAN", "-1.#QNAN", "<NA>", "nil", "NIL", "undefined", "#VALUE!",
]  # fmt: skip


# -- media helpers ------------------------------------------------------------------------------------


def png_bytes(size: tuple[int, int] = (8, 8), mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size).save(buf, format="PNG")
    return buf.getvalue()


def lying_png(width: int, height: int, body: bytes = b"\x00" * 64) -> bytes:
    """A PNG whose header claims width x height, followed by a small (truncated or garbage) IDAT."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(body))
        + chunk(b"IEND", b"")
    )


def wav_bytes(frames: int = 1600, rate: int = 16000, channels: int = 1) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.zeros((frames, channels), np.float32), rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def wav_header(data_size: int, rate: int, data: bytes, channels: int = 1) -> bytes:
    """A PCM-16 WAV whose data chunk claims `data_size` bytes, holding `data`."""
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * 2 * channels, 2 * channels, 16)
    return (
        b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
        + b"data" + struct.pack("<I", data_size) + data
    )  # fmt: skip


def flac_silence(path: Path, seconds: float, rate: int = 8000) -> Path:
    """A FLAC of silence: a few KB on disk that claims `seconds` of audio (written in blocks, never held)."""
    block = np.zeros(1 << 16, np.int16)
    with sf.SoundFile(path, "w", samplerate=rate, channels=1, format="FLAC", subtype="PCM_16") as f:
        left = int(seconds * rate)
        while left > 0:
            f.write(block[: min(left, len(block))])
            left -= len(block)
    return path


def bomb_png(path: Path, side: int = 10000) -> Path:
    """A 1-bit side x side PNG: ~12 KB on disk, above PIL's bomb warning (89 Mpx) but below its error (179 Mpx)."""
    Image.new("1", (side, side)).save(path, format="PNG")
    return path


def write_csv(path: Path, rows: list[dict], delimiter: str = ",") -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)
    return path


def table(result, columns: list[str]) -> list[dict]:
    return result.dataset.lance.to_table(columns=columns).to_pylist()


def rejected_by_row(result) -> dict[int, dict]:
    return {item["row"]: item for item in result.rejected}


# -- null-looking strings -----------------------------------------------------------------------------


def _nullish_rows() -> list[dict]:
    rows = [
        {"id": v, "text": v, "label": v, "note": v, "score": "0.5" if k else "NA"}
        for k, v in enumerate(NULLISH)
    ]
    rows.append({"id": "empty-cells", "text": "caption", "label": "", "note": "", "score": ""})
    return rows


def _nullish_source(kind: str, tmp_path: Path):
    rows = _nullish_rows()
    if kind in ("csv", "tsv"):
        return write_csv(tmp_path / f"m.{kind}", rows, "\t" if kind == "tsv" else ",")
    nulled = [{k: (v if v != "" else None) for k, v in row.items()} for row in rows]
    if kind == "jsonl":
        path = tmp_path / "m.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in nulled), encoding="utf-8")
        return path
    if kind == "parquet":
        path = tmp_path / "m.parquet"
        pq.write_table(pa.Table.from_pylist(nulled), path)
        return path
    if kind == "dataframe":
        return pd.DataFrame(nulled, dtype=object)
    import datasets

    return datasets.Dataset.from_list(nulled)


@pytest.mark.parametrize("kind", ["csv", "tsv", "jsonl", "parquet", "dataframe", "hf"])
def test_null_looking_strings_stay_strings_and_only_empty_cells_are_null(kind, tmp_path):
    source = _nullish_source(kind, tmp_path)
    result = ingest(source, tmp_path / "n.lance", quiet=True)
    assert result.rejected == [] and result.written == len(NULLISH) + 1
    got = {r["id"]: r for r in table(result, ["id", "text", "label", "note", "score"])}
    violations = 0
    for k, value in enumerate(NULLISH):
        want = {"id": value, "text": value, "label": value, "note": value, "score": "0.5" if k else "NA"}
        violations += got.get(value) != want
    assert violations == 0, [got.get(v) for v in NULLISH]
    assert got["empty-cells"] == {
        "id": "empty-cells",
        "text": "caption",
        "label": None,
        "note": None,
        "score": None,
    }
    fault_tally.record("hostile_inputs", len(NULLISH), violations)


# -- oversized fields, bad encodings, bad lines ----------------------------------------------------------


def test_oversized_and_badly_encoded_csv_fields_reject_only_their_row(tmp_path):
    big = b"x" * 2_000_000
    lines = [
        b"id,text,label,note",
        b"good-0,a caption,cat,fine",
        b"big-caption," + big + b",cat,fine",
        b"bad-caption,caf\xff,cat,fine",
        b"bad-label,ok,c\xfet,fine",
        b"bad-note,ok,cat,\x80\x81",
        b"bad-id-\xfe,ok,cat,fine",
        b"big-note,ok,cat," + b"y" * 100_000,
        b"short-row,ok,cat",
        b'"quoted, big",' + b'"' + big.replace(b"x", b"q") + b'",cat,fine',
        b"good-1,another caption,dog,fine",
    ]
    path = tmp_path / "m.csv"
    path.write_bytes(b"\n".join(lines) + b"\n")
    result = ingest(path, tmp_path / "f.lance", quiet=True)
    assert [r["id"] for r in table(result, ["id"])] == ["good-0", "good-1"]
    expected = {  # row -> (kind, where)
        1: ("too_long", "text column"),
        2: ("bad_text", "text column"),
        3: ("bad_text", "label column"),
        4: ("bad_text", "note column"),
        5: ("bad_text", "id column"),
        6: ("too_long", "note column"),
        7: ("bad_row", "m.csv line 9"),
        8: ("too_long", "text column"),
    }
    report = json.loads(Path(result.report_path).read_text())
    got = {item["row"]: (item["kind"], item["file"]) for item in report["rejected"]}
    violations = sum(got.get(row) != want for row, want in expected.items())
    assert got == expected
    reasons = {item["row"]: item["reason"] for item in report["rejected"]}
    assert "1.9 MiB, over the 64 KiB limit" in reasons[1] and "--max-text-kb" in reasons[1]
    assert "byte 0xFF" in reasons[2] and "byte 0xFE" in reasons[5]
    assert "3 fields, the header has 4" in reasons[7]
    assert report["rejected"][4]["id"] == "bad-id-\\udcfe"  # the report stays valid JSON
    fault_tally.record("hostile_inputs", len(expected), violations)

    # the cap is configurable: with 4 MiB both big captions are kept, byte for byte
    wide = ingest(path, tmp_path / "w.lance", max_text_kb=4096, quiet=True)
    texts = {r["id"]: r["text"] for r in table(wide, ["id", "text"])}
    assert texts["big-caption"] == big.decode() and texts["quoted, big"] == big.decode().replace("x", "q")


def test_jsonl_with_bad_lines_rejects_those_rows_without_a_traceback(tmp_path, capsys):
    lines = [
        json.dumps({"id": "a", "text": "first"}).encode(),
        b'{"id": "b", "text": ',
        b"[1, 2, 3]",
        b'{"id": "d", "text": "caf\xff"}',
        b'{"id": "e", "text": "\\ud800 lone"}',
        json.dumps({"id": "f", "text": "z" * 2_000_000}).encode(),
        b'"just a string"',
        b"",
        b"   ",
        b'{"id": "h", "text": "last", "n": 3}',
        b"",
    ]
    path = tmp_path / "m.jsonl"
    path.write_bytes(b"\n".join(lines))
    main(["ingest", str(path), "--out", str(tmp_path / "j.lance"), "-q"])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    assert "ingested 2 of 8 rows" in captured.out and "rejected 6" in captured.out
    report = json.loads((tmp_path / "j.report.json").read_text())
    got = {item["row"]: (item["kind"], item["file"]) for item in report["rejected"]}
    expected = {
        1: ("bad_json", "m.jsonl line 2"),
        2: ("bad_json", "m.jsonl line 3"),
        3: ("bad_text", "m.jsonl line 4"),
        4: ("bad_text", "text column"),
        5: ("too_long", "text column"),
        6: ("bad_json", "m.jsonl line 7"),
    }
    assert got == expected
    reasons = {item["row"]: item["reason"] for item in report["rejected"]}
    assert "not valid JSON" in reasons[1] and "JSON list, not an object" in reasons[2]
    assert "byte 0xFF" in reasons[3] and "U+D800" in reasons[4]
    fault_tally.record("hostile_inputs", len(expected), sum(got.get(r) != w for r, w in expected.items()))


def test_dataframe_fields_with_surrogates_or_over_the_cap_reject_their_row(tmp_path):
    frame = pd.DataFrame(
        {
            "id": ["ok", "bad-label", "big-label", "bad-\udc81-id"],
            "text": ["caption"] * 4,
            "label": ["cat", "c\ud800t", "l" * 70_000, "cat"],
        },
        dtype=object,
    )
    result = ingest(frame, tmp_path / "d.lance", quiet=True)
    assert result.dataset.ids() == ["ok"]
    got = {r["row"]: (r["kind"], r["file"]) for r in result.rejected}
    assert got == {
        1: ("bad_text", "label column"),
        2: ("too_long", "label column"),
        3: ("bad_text", "id column"),
    }
    fault_tally.record("hostile_inputs", 3)


def test_parquet_strings_that_are_not_utf8_reject_their_row(tmp_path):
    ids = pa.array([b"a", b"b\xff", b"c"], pa.binary()).view(pa.string())  # parquet holds them unchecked
    texts = pa.array([b"one", b"two", b"thr\xeee"], pa.binary()).view(pa.string())
    pq.write_table(pa.table({"id": ids, "text": texts}), tmp_path / "m.parquet")
    result = ingest(tmp_path / "m.parquet", tmp_path / "p.lance", quiet=True)
    assert result.dataset.ids() == ["a"]
    got = {r["row"]: (r["kind"], r["file"]) for r in result.rejected}
    assert got == {1: ("bad_text", "id column"), 2: ("bad_text", "text column")}
    assert "byte 0xFF" in result.rejected[0]["reason"] and "byte 0xEE" in result.rejected[1]["reason"]
    fault_tally.record("hostile_inputs", 2)


# -- ids in NFC --------------------------------------------------------------------------------------


def test_ids_are_stored_in_nfc_and_nfc_equal_ids_are_duplicates(tmp_path):
    nfd = "cafe\u0301"
    single = ingest(
        write_csv(tmp_path / "one.csv", [{"id": nfd, "text": "x"}]), tmp_path / "o.lance", quiet=True
    )
    assert single.dataset.ids() == ["caf\u00e9"]
    pair = write_csv(tmp_path / "two.csv", [{"id": "caf\u00e9", "text": "x"}, {"id": nfd, "text": "y"}])
    with pytest.raises(DataError, match="duplicate id 'café' in rows 0 and 1"):
        ingest(pair, tmp_path / "t.lance", quiet=True)
    assert not (tmp_path / "t.lance").exists()

    tree = tmp_path / "tree" / "cafe\u0301s"  # folder names from macOS arrive decomposed
    tree.mkdir(parents=True)
    (tree / "n\u0303.png").write_bytes(png_bytes())
    folder = ingest(tmp_path / "tree", tmp_path / "f.lance", quiet=True)
    assert folder.dataset.ids() == ["caf\u00e9s/\u00f1"]
    fault_tally.record("hostile_inputs", 3)


def test_an_append_refuses_the_nfc_twin_of_an_id_stored_before_ids_were_normalised(tmp_path, monkeypatch):
    from mmpt.store import manifest

    monkeypatch.setattr(manifest, "normalise_id", manifest._id_text)  # an ingest from before NFC ids
    old = ingest(
        write_csv(tmp_path / "old.csv", [{"id": "cafe\u0301", "text": "x"}]), tmp_path / "a.lance", quiet=True
    )
    assert old.dataset.ids() == ["cafe\u0301"]
    monkeypatch.undo()
    with pytest.raises(DataError, match="id 'café' \\(row 0\\) is already in"):
        ingest(
            write_csv(tmp_path / "new.csv", [{"id": "caf\u00e9", "text": "y"}]),
            tmp_path / "a.lance",
            append=True,
            quiet=True,
        )
    from mmpt.store.dataset import open_dataset

    assert open_dataset(tmp_path / "a.lance").ids() == ["cafe\u0301"]
    fault_tally.record("hostile_inputs", 1)


_ids = st.text(min_size=1, max_size=12).filter(lambda s: s.strip() != "")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=_ids, kind=st.sampled_from(["csv", "jsonl"]))
def test_any_two_nfc_equivalent_ids_collide(tmp_path_factory, text, kind):
    composed, decomposed = unicodedata.normalize("NFC", text), unicodedata.normalize("NFD", text)
    folder = tmp_path_factory.mktemp("nfc")
    rows = [{"id": composed, "text": "a"}, {"id": decomposed, "text": "b"}]
    if kind == "csv":
        path = write_csv(folder / "m.csv", rows)
    else:
        path = folder / "m.jsonl"
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(DataError, match="duplicate id"):
        ingest(path, folder / "x.lance", quiet=True)
    fault_tally.record("hostile_inputs", 1)


# arbitrary text, with the null-looking strings drawn often enough to meet them in a few examples
_captions = st.one_of(
    st.sampled_from(NULLISH), st.text(min_size=1, max_size=80).filter(lambda s: s.strip() != "")
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(
        st.tuples(
            st.one_of(st.sampled_from(NULLISH), _ids.map(lambda s: unicodedata.normalize("NFC", s))),
            _captions,
            _captions,
        ),
        min_size=1,
        max_size=4,
        unique_by=lambda row: row[0],
    ),
    kind=st.sampled_from(["csv", "tsv", "jsonl"]),
)
def test_any_caption_id_and_label_round_trip_byte_for_byte(tmp_path_factory, rows, kind):
    folder = tmp_path_factory.mktemp("rt")
    records = [{"id": i, "text": t, "label": label} for i, t, label in rows]
    if kind == "jsonl":
        path = folder / "m.jsonl"
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    else:
        path = write_csv(folder / f"m.{kind}", records, "\t" if kind == "tsv" else ",")
    result = ingest(path, folder / "r.lance", quiet=True)
    got = [(r["id"], r["text"], r["label"]) for r in table(result, ["id", "text", "label"])]
    encoded = [tuple(v.encode("utf-8") for v in row) for row in got]
    violations = int(encoded != [tuple(v.encode("utf-8") for v in row) for row in rows])
    assert violations == 0, (got, rows)
    fault_tally.record("hostile_inputs", len(rows), violations)


# -- file access: special files, size, symlinks -------------------------------------------------------


@pytest.mark.timeout(60)
def test_devices_fifos_sockets_and_folders_are_refused_without_reading(tmp_path):
    media = tmp_path / "media"
    media.mkdir()
    (media / "ok.png").write_bytes(png_bytes())
    (media / "ok.wav").write_bytes(wav_bytes())
    (media / "big.wav").write_bytes(wav_bytes(frames=600_000))  # 1.1 MiB
    os.mkfifo(media / "pipe.wav")
    os.mkfifo(media / "pipe.txt")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(media / "sock.png"))
    (media / "folder.png").mkdir()
    rows = [
        {"id": "ok", "image": "media/ok.png", "audio": "media/ok.wav"},
        {"id": "zero-image", "image": "/dev/zero", "audio": ""},
        {"id": "zero-audio", "image": "", "audio": "/dev/zero"},
        {"id": "fifo", "image": "", "audio": "media/pipe.wav"},
        {"id": "socket", "image": "media/sock.png", "audio": ""},
        {"id": "folder", "image": "media/folder.png", "audio": ""},
        {"id": "big", "image": "", "audio": "media/big.wav"},
        {"id": "urandom", "image": "/dev/urandom", "audio": ""},
        {"id": "ok-2", "image": "media/ok.png", "audio": ""},
    ]
    manifest = write_csv(tmp_path / "m.csv", rows)
    try:
        result = ingest(manifest, tmp_path / "s.lance", max_blob_mb=1, workers=1, quiet=True)
    finally:
        server.close()
    assert result.dataset.ids() == ["ok", "ok-2"]
    got = {rows[r]["id"]: (item["kind"], item["reason"]) for r, item in rejected_by_row(result).items()}
    expected = {
        "zero-image": ("not_regular_file", "a character device"),
        "zero-audio": ("not_regular_file", "a character device"),
        "fifo": ("not_regular_file", "a FIFO"),
        "socket": ("not_regular_file", "a socket"),
        "folder": ("unreadable_file", "is a folder"),
        "big": ("too_large", "over the 1 MiB limit (raise it with --max-blob-mb)"),
        "urandom": ("not_regular_file", "a character device"),
    }
    violations = sum(
        got.get(key, ("", ""))[0] != kind or words not in got[key][1]
        for key, (kind, words) in expected.items()
    )
    assert violations == 0, got
    # a caption file may not be a FIFO either (folder trees read .txt captions)
    tree = tmp_path / "tree" / "cat"
    tree.mkdir(parents=True)
    (tree / "a.png").write_bytes(png_bytes())
    os.mkfifo(tree / "a.txt")
    (tree / "b.png").write_bytes(png_bytes())
    folder = ingest(tmp_path / "tree", tmp_path / "t.lance", workers=1, quiet=True)
    assert folder.dataset.ids() == ["cat/b"] and folder.rejected[0]["kind"] == "not_regular_file"
    # nor may the manifest itself: a FIFO would block the first read, /dev/zero would never end
    os.mkfifo(tmp_path / "pipe.csv")
    (tmp_path / "zero.jsonl").symlink_to("/dev/zero")
    for manifest, kind in (
        (tmp_path / "pipe.csv", "a FIFO"),
        (tmp_path / "zero.jsonl", "a character device"),
    ):
        with pytest.raises(DataError, match=f"manifest .* is {kind}.*, not a regular file"):
            ingest(manifest, tmp_path / "x.lance", quiet=True)
    fault_tally.record("hostile_inputs", len(expected) + 3, violations)


def test_in_memory_bytes_over_the_blob_limit_reject_their_row(tmp_path):
    frame = pd.DataFrame({"id": ["small", "large"], "image": [png_bytes(), png_bytes() + b"\0" * (2 << 20)]})
    result = ingest(frame, tmp_path / "b.lance", max_blob_mb=1, quiet=True)
    assert result.dataset.ids() == ["small"] and result.rejected[0]["kind"] == "too_large"
    fault_tally.record("hostile_inputs", 1)


def _symlink_tree(tmp_path: Path) -> tuple[Path, Path]:
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.txt"
    secret.write_text("root:x:0:0:the secret")
    (outside / "b.png").write_bytes(png_bytes())
    root = tmp_path / "tree"
    for label in ("cat", "dog", "shared"):
        (root / label).mkdir(parents=True)
    (root / "cat" / "c.png").write_bytes(png_bytes())
    (root / "cat" / "c.txt").symlink_to(secret)  # cat/c.txt -> a file outside the tree
    (root / "shared" / "d.png").write_bytes(png_bytes())
    (root / "dog" / "d.png").symlink_to(Path("..") / "shared" / "d.png")  # a link that stays inside
    (root / "bird").symlink_to(outside, target_is_directory=True)  # a folder outside the tree
    (root / "loop").symlink_to(root, target_is_directory=True)  # a link back to the root
    if Path("/etc/passwd").is_file():
        (root / "cat" / "p.png").write_bytes(png_bytes())
        (root / "cat" / "p.txt").symlink_to("/etc/passwd")
    return root, secret


def test_symlinks_out_of_a_folder_tree_are_refused_unless_followed(tmp_path):
    root, secret = _symlink_tree(tmp_path)
    result = ingest(root, tmp_path / "t.lance", quiet=True)
    rows = {r["id"]: r for r in table(result, ["id", "text", "label"])}
    assert sorted(rows) == ["dog/d", "shared/d"]  # bird/ is not walked; the loop is not walked
    outside_rows = [r for r in result.rejected if r["kind"] == "outside_root"]
    expected = 2 if (root / "cat" / "p.txt").exists() else 1
    assert len(outside_rows) == expected == len(result.rejected)
    assert {Path(r["file"]).name for r in outside_rows} <= {"c.txt", "p.txt"}
    assert "--follow-symlinks" in outside_rows[0]["reason"]
    leaked = sum("root:" in (r["text"] or "") for r in rows.values())
    assert leaked == 0

    followed = ingest(root, tmp_path / "f.lance", follow_symlinks=True, quiet=True)
    texts = {r["id"]: r["text"] for r in table(followed, ["id", "text"])}
    assert texts["cat/c"] == secret.read_text() and "bird/b" in texts
    assert not any(i.startswith("loop/") for i in texts)  # each real folder walked once
    fault_tally.record("hostile_inputs", expected + 2, leaked)


def test_symlinks_next_to_a_manifest_are_refused_unless_followed(tmp_path, monkeypatch):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.png").write_bytes(png_bytes())
    base = tmp_path / "data"
    (base / "media").mkdir(parents=True)
    (base / "media" / "ok.png").write_bytes(png_bytes())
    (base / "media" / "evil.png").symlink_to(outside / "x.png")
    (base / "linked").symlink_to(outside, target_is_directory=True)
    rows = [
        {"id": "ok", "image": "media/ok.png"},
        {"id": "evil", "image": "media/evil.png"},
        {"id": "via-folder", "image": "linked/x.png"},
        {"id": "named", "image": str(outside / "x.png")},  # named outright: read as named
    ]
    manifest = write_csv(base / "m.csv", rows)
    result = ingest(manifest, tmp_path / "m.lance", quiet=True)
    assert result.dataset.ids() == ["ok", "named"]
    assert [r["kind"] for r in result.rejected] == ["outside_root", "outside_root"]
    main(["ingest", str(manifest), "--out", str(tmp_path / "f.lance"), "--follow-symlinks", "-q"])
    from mmpt.store.dataset import open_dataset

    assert open_dataset(tmp_path / "f.lance").ids() == ["ok", "evil", "via-folder", "named"]
    # a DataFrame has no source folder: its paths are the caller's own, read as named (still regular files only)
    monkeypatch.chdir(base)
    frame = pd.DataFrame([*rows[:3], {"id": "zero", "image": "/dev/zero"}])
    framed = ingest(frame, tmp_path / "d.lance", quiet=True)
    assert framed.dataset.ids() == ["ok", "evil", "via-folder"]
    assert [r["kind"] for r in framed.rejected] == ["not_regular_file"]
    fault_tally.record("hostile_inputs", 3)


# -- bombs, truncated and lying headers ------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_bombs_and_truncated_or_lying_headers_reject_their_row(tmp_path):
    media = tmp_path / "media"
    media.mkdir()
    files = {
        "ok.png": png_bytes(),
        "ok.wav": wav_bytes(),
        "lying-50mpx.png": lying_png(20000, 2500),  # under PIL's warning, over ours; garbage pixel data
        "lying-huge.png": lying_png(100_000, 100_000),  # over PIL's own bomb error
        "lying-small.png": lying_png(100, 100, b""),  # a plausible header with no pixel data
        "truncated.png": png_bytes((64, 64), "RGB")[:60],
        "slow-rate.wav": wav_header(20_000, 8, b"\0" * 20_000),  # 10,000 frames at 8 Hz: 1,250 s
        "lying-length.wav": wav_header(0x7FFFFFF0, 16000, b"\0" * 1000),  # claims 2 GB of data
        "stereo.wav": wav_bytes(frames=16000, channels=2),  # 32,000 samples
    }
    for name, data in files.items():
        (media / name).write_bytes(data)
    bomb_png(media / "bomb.png")
    flac_silence(media / "long.flac", seconds=660)
    assert (media / "bomb.png").stat().st_size < 1 << 20 and (media / "long.flac").stat().st_size < 1 << 20
    expected = {  # file -> (kind, words in the reason)
        "bomb.png": ("too_many_pixels", "10000x10000 = 100,000,000 pixels, over the 40,000,000 limit"),
        "lying-50mpx.png": ("too_many_pixels", "20000x2500"),
        "lying-huge.png": ("too_many_pixels", "decompression-bomb"),
        "lying-small.png": ("corrupt_image", "does not decode"),
        "truncated.png": ("corrupt_image", "does not decode"),
        "slow-rate.wav": ("audio_too_long", "1,250.0 s, over the 600 s limit"),
        "long.flac": ("audio_too_long", "660.0 s, over the 600 s limit"),
        "lying-length.wav": ("corrupt_audio", "truncated"),
        "stereo.wav": ("audio_too_long", "32,000 samples, over the 20,000 limit"),
    }
    rows = [{"id": "ok", "image": "media/ok.png", "audio": "media/ok.wav"}]
    for name in expected:
        png = name.endswith(".png")
        rows.append(
            {"id": name, "image": f"media/{name}" if png else "", "audio": "" if png else f"media/{name}"}
        )
    manifest = write_csv(tmp_path / "m.csv", rows)
    result = ingest(manifest, tmp_path / "b.lance", max_audio_samples=20_000, workers=1, quiet=True)
    assert result.dataset.ids() == ["ok"]
    got = {item["id"]: (item["kind"], item["reason"]) for item in result.rejected}
    violations = sum(
        got.get(name, ("", ""))[0] != kind or words not in got[name][1]
        for name, (kind, words) in expected.items()
    )
    assert violations == 0, got
    fault_tally.record("hostile_inputs", len(expected), violations)

    # every limit is configurable: raised, the bomb, the long clips and the stereo clip are ingested
    raised = ingest(
        manifest,
        tmp_path / "r.lance",
        max_pixels=150_000_000,
        max_audio_seconds=2000,
        workers=1,
        quiet=True,
    )
    assert {"bomb.png", "slow-rate.wav", "long.flac", "stereo.wav"} <= set(raised.dataset.ids())


# -- the same limits when a model embeds user-given files -------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """An untrained tiny model saved as a checkpoint folder (the limits do not depend on the weights)."""
    import torch

    from mmpt.models.checkpoint import save_model
    from mmpt.models.model import build_model
    from mmpt.models.presets import preset_config

    torch.manual_seed(0)
    return save_model(build_model(preset_config("tiny")), tmp_path_factory.mktemp("ckpt") / "tiny")


@pytest.mark.timeout(120)
def test_the_encoder_refuses_bombs_devices_and_fifos_in_one_line(checkpoint, tmp_path):
    from mmpt.embed.encoder import load_model

    encoder = load_model(checkpoint, "cpu")
    bomb = bomb_png(tmp_path / "bomb.png")
    os.mkfifo(tmp_path / "pipe.wav")
    long_clip = flac_silence(tmp_path / "long.flac", seconds=660)
    cases = [
        (lambda: encoder.embed_images([bomb]), "100,000,000 pixels, over the 40,000,000 limit"),
        (lambda: encoder.embed_images([lying_png(20000, 2500)]), "20000x2500"),
        (lambda: encoder.embed_images(["/dev/zero"]), "is a character device, not a regular file"),
        (lambda: encoder.embed_images([tmp_path / "pipe.wav"]), "is a FIFO"),
        (lambda: encoder.embed_audio(["/dev/zero"]), "is a character device"),
        (lambda: encoder.embed_audio([tmp_path / "pipe.wav"]), "is a FIFO"),
        (lambda: encoder.embed_audio([long_clip]), "660.0 s, over the 600 s limit"),
        (lambda: encoder.embed_audio([wav_header(20_000, 8, b"\0" * 20_000)]), "1,250.0 s"),
    ]
    violations = 0
    for call, words in cases:
        with pytest.raises(DataError) as info:
            call()
        message = str(info.value)
        violations += words not in message or "\n" in message
        assert words in message and "\n" not in message, message
    assert encoder.embed_images([png_bytes((32, 32))]).shape == (1, encoder.dim)  # fine inputs still embed
    fault_tally.record("hostile_inputs", len(cases), violations)


@pytest.mark.timeout(180)
def test_search_with_a_bomb_or_a_device_as_the_query_is_one_line(checkpoint, tmp_path, capsys):
    rows = [{"id": f"r{k}", "text": f"caption {k}"} for k in range(8)]
    data = tmp_path / "s.lance"
    ingest(write_csv(tmp_path / "m.csv", rows), data, quiet=True)
    bomb = bomb_png(tmp_path / "bomb.png")
    cases = [("--image", "/dev/zero", "character device"), ("--image", str(bomb), "pixels"),
             ("--audio", "/dev/zero", "character device")]  # fmt: skip
    for flag, query, words in cases:
        with pytest.raises(SystemExit) as info:
            main(["search", "--run", str(checkpoint), "--data", str(data), flag, query, "--modality", "text",
                  "--device", "cpu", "--quiet"])  # fmt: skip
        err = capsys.readouterr().err
        assert info.value.code == 1 and words in err and err.startswith("error: ") and err.count("\n") == 1, (
            err
        )
    fault_tally.record("hostile_inputs", len(cases))
