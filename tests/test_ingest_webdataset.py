"""Webdataset ingest: generated img2dataset-style shards, read as a stream, with corrupt members and cut shards."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from mmpt.errors import DataError
from mmpt.store.dataset import open_dataset
from mmpt.store.ingest import ingest
from mmpt.store.limits import ReadLimits
from mmpt.store.manifest import open_source
from mmpt.store.validate import check_row
from mmpt.store.webdataset import expand_shards

IMAGE_FORMATS = (("png", "PNG"), ("jpg", "JPEG"), ("webp", "WEBP"))
AUDIO_FORMATS = (("wav", "WAV"), ("flac", "FLAC"))


def image_bytes(fmt: str, level: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (12, 8), (level, 255 - level, 40)).save(buf, format=fmt)
    return buf.getvalue()


def audio_bytes(fmt: str, hz: float) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, (0.2 * np.sin(2 * np.pi * hz * np.arange(800) / 8000)).astype(np.float32), 8000, format=fmt)
    return buf.getvalue()


def sample(shard: int, k: int) -> list[tuple[str, bytes]]:
    """One img2dataset-style sample: image, audio, caption, json metadata and a class, under one key."""
    key = f"{shard:05d}{k:04d}"
    ext, fmt = IMAGE_FORMATS[k % 3]
    aext, afmt = AUDIO_FORMATS[k % 2]
    meta = {
        "url": f"https://example.org/{key}.{ext}",
        "width": 12,
        "similarity": 0.25 * k,
        "status": "success",
    }
    return [
        (f"{key}.{ext}", image_bytes(fmt, 20 * k + shard)),
        (f"{key}.{aext}", audio_bytes(afmt, 300 + 50 * k)),
        (f"{key}.txt", f"caption {shard}-{k}\n".encode()),
        (f"{key}.json", json.dumps(meta).encode()),
        (f"{key}.cls", str(k % 2).encode()),
    ]


def tar_bytes(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def member_end(data: bytes, name: str) -> int:
    """The byte offset where member `name`'s data ends in a tar."""
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = tar.getmember(name)
        return member.offset_data + member.size


def read_rows(uri: Path) -> dict[str, dict]:
    ds = open_dataset(uri)
    table = ds.lance.to_table().drop_columns(["image", "audio"]).to_pylist()
    positions = list(range(len(table)))
    for name in ("image", "audio"):
        for row, blob in zip(table, ds.read_blobs(name, positions), strict=True):
            row[name] = blob
    return {r["id"]: r for r in table}


@pytest.fixture
def shards(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    """Three shards of 4 samples: shard 1 holds a cut-off JPEG member, shard 2 is cut in the middle of a
    member of its third sample. Returns the folder and every member's bytes by `<shard>:<member>`."""
    folder = tmp_path / "shards"
    folder.mkdir()
    members: dict[str, bytes] = {}
    for s in range(3):
        items = [m for k in range(4) for m in sample(s, k)]
        if s == 1:  # the JPEG of sample 1 loses its second half (the tar header says the shorter size)
            name, data = items[5]
            items[5] = (name, data[: len(data) // 2])
        data = tar_bytes(items)
        if s == 2:  # cut inside the audio member of sample 2
            data = data[: member_end(data, "000020002.wav") - 100]
        (folder / f"{s:05d}.tar").write_bytes(data)
        members.update({f"{s:05d}:{n}": d for n, d in items})
    return folder, members


def test_cli_brace_pattern_streams_shards_and_reports_bad_members(shards, tmp_path):
    folder, members = shards
    out = tmp_path / "wds.lance"
    proc = subprocess.run(
        [sys.executable, "-m", "mmpt", "ingest", str(folder / "{00000..00002}.tar"), "--out", str(out), "-q"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in folder.iterdir()) == [
        "00000.tar",
        "00001.tar",
        "00002.tar",
    ]  # nothing unpacked
    rows = read_rows(out)
    kept = ["00000/000000000", "00000/000000001", "00000/000000002", "00000/000000003"]
    kept += ["00001/000010000", "00001/000010002", "00001/000010003", "00002/000020000", "00002/000020001"]
    assert sorted(rows) == kept
    row = rows["00001/000010002"]
    assert row["image"] == members["00001:000010002.webp"] and row["audio"] == members["00001:000010002.wav"]
    assert row["image_sha256"] == hashlib.sha256(row["image"]).hexdigest()
    assert (row["text"], row["label"], row["width"], row["similarity"]) == ("caption 1-2", "0", 12, 0.5)
    assert row["url"] == "https://example.org/000010002.webp"
    assert row["source"] == f"{folder / '00001.tar'}:000010002"
    assert rows["00000/000000001"]["audio"] == members["00000:000000001.flac"]

    report = json.loads((tmp_path / "wds.report.json").read_text())
    assert report["totals"] == {"read": 11, "written": 9, "rejected": 2}
    bad = {r["kind"]: r for r in report["rejected"]}
    corrupt = bad["corrupt_image"]  # shard name + key (the id) + member name
    assert (corrupt["id"], corrupt["file"]) == ("00001/000010001", f"{folder / '00001.tar'}:000010001.jpg")
    cut = bad["truncated_shard"]
    assert cut["id"] == "00002/000020002" and cut["file"] == f"{folder / '00002.tar'}:000020002.wav"
    assert "the samples before it are kept" in cut["reason"] and "00002.tar" in cut["reason"]


def test_paths_globs_and_lists_give_the_same_rows(shards, tmp_path):
    folder, _ = shards
    by_glob = ingest(str(folder / "0000[01].tar"), tmp_path / "g.lance", quiet=True)
    by_list = ingest([str(folder / "00000.tar"), folder / "00001.tar"], tmp_path / "l.lance", quiet=True)
    assert sorted(read_rows(by_glob.dataset.uri)) == sorted(read_rows(by_list.dataset.uri))
    assert by_glob.written == 7
    one = ingest(str(folder / "00000.tar"), tmp_path / "one.lance", quiet=True)
    assert sorted(read_rows(one.dataset.uri))[0] == "00000/000000000"


def test_keys_repeating_across_shards_stay_distinct_and_within_one_are_reported(tmp_path):
    for part in ("laion", "cc3m"):
        (tmp_path / part).mkdir()
        (tmp_path / part / "00000.tar").write_bytes(tar_bytes(sample(0, 0) + sample(0, 1)))
    again = sample(0, 0) + sample(0, 1) + [(n, d) for n, d in sample(0, 0) if n.endswith(".txt")]
    (tmp_path / "dup.tar").write_bytes(tar_bytes(again))
    result = ingest(
        [str(tmp_path / "laion" / "00000.tar"), str(tmp_path / "cc3m" / "00000.tar")],
        tmp_path / "a.lance",
        quiet=True,
    )
    assert sorted(read_rows(result.dataset.uri)) == [
        "cc3m/00000/000000000",
        "cc3m/00000/000000001",
        "laion/00000/000000000",
        "laion/00000/000000001",
    ]
    dup = ingest(str(tmp_path / "dup.tar"), tmp_path / "d.lance", quiet=True)
    assert dup.written == 2
    (item,) = dup.rejected
    assert item["kind"] == "duplicate_key" and "000000000" in item["reason"] and "dup.tar" in item["file"]


def test_bad_shards_and_members_are_reported_and_the_rest_kept(tmp_path):
    good = tar_bytes(sample(0, 0) + sample(0, 1))
    (tmp_path / "a.tar").write_bytes(good)
    (tmp_path / "b.tar").write_bytes(b"this is not a tar archive" * 40)
    bad_json = [(n, b"{not json" if n.endswith(".json") else d) for n, d in sample(2, 0)]
    wrong_type = [(n, b'{"width": "wide"}' if n.endswith(".json") else d) for n, d in sample(2, 1)]
    not_utf8 = [(n, b"\xff\xfe caption" if n.endswith(".txt") else d) for n, d in sample(2, 2)]
    (tmp_path / "c.tar").write_bytes(tar_bytes(bad_json + wrong_type + not_utf8 + sample(2, 3)))
    damaged = bytearray(tar_bytes(sample(3, 0) + sample(3, 1)))  # a corrupt header: sample 1's first member
    header = member_end(bytes(damaged), "000030000.cls") + 511 & ~511
    damaged[header : header + 100] = b"\x07" * 100
    (tmp_path / "d.tar").write_bytes(bytes(damaged))
    (tmp_path / "e.tar.gz").write_bytes(gzip.compress(tar_bytes(sample(4, 0) + sample(4, 1)))[:-300])

    paths = [str(tmp_path / name) for name in ("a.tar", "b.tar", "c.tar", "d.tar", "e.tar.gz")]
    result = ingest(paths, tmp_path / "x.lance", quiet=True)
    rows = read_rows(result.dataset.uri)
    assert sorted(rows) == ["a/000000000", "a/000000001", "c/000020003", "e/000040000"]
    kinds = {(r["kind"], (r["file"] or "").rsplit("/", 1)[-1]) for r in result.rejected}
    assert ("corrupt_shard", "b.tar") in kinds
    assert ("bad_metadata", "c.tar:000020000.json") in kinds
    assert ("bad_metadata", "c.tar:000020001.json") in kinds
    assert ("bad_text", "c.tar:000020002.txt") in kinds
    assert ("corrupt_shard", "d.tar:000030000.cls") in kinds  # the header after it is corrupt
    assert any(k == "truncated_shard" and f.startswith("e.tar.gz") for k, f in kinds)
    reasons = " | ".join(r["reason"] for r in result.rejected)
    assert "'width' is 'wide', not int64" in reasons and "is not valid UTF-8" in reasons
    assert "corrupt member header" in reasons


def test_member_limit_missing_shards_and_video_members(tmp_path):
    (tmp_path / "a.tar").write_bytes(tar_bytes(sample(0, 0)))
    src = open_source(str(tmp_path / "a.tar"), limits=ReadLimits(max_blob_bytes=200))
    (row,) = next(src.chunks(10))
    checked = check_row(row)
    assert checked["rejected"] == "too_large" and "over the 200 bytes limit" in checked["reason"]
    with pytest.raises(DataError, match="shard not found: .*00001.tar"):
        ingest(str(tmp_path / "{a,00001}.tar"), tmp_path / "m.lance", quiet=True)
    with pytest.raises(DataError, match="no shards match"):
        expand_shards([str(tmp_path / "nothing-*.tar")])
    with pytest.raises(DataError, match="must all be shards"):
        expand_shards([str(tmp_path / "a.tar"), str(tmp_path / "m.csv")])

    clip = io.BytesIO()
    with av.open(clip, "w", format="mp4") as out:
        stream = out.add_stream("mpeg4", rate=5)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "yuv420p"
        for i in range(5):
            frame = av.VideoFrame.from_ndarray(np.full((16, 16, 3), 40 * i, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    (tmp_path / "v.tar").write_bytes(tar_bytes([("clip.mp4", clip.getvalue()), ("clip.txt", b"five frames")]))
    result = ingest(str(tmp_path / "v.tar"), tmp_path / "v.lance", quiet=True)
    row = read_rows(result.dataset.uri)["v/clip"]
    assert row["text"] == "five frames" and row["image"][:2] == b"\xff\xd8" and row["audio"] is None
    assert row["source"] == f"{tmp_path / 'v.tar'}:clip"


def test_split_folders_json_split_and_caption_lists(tmp_path):
    """Shards under train/ and validation/ take those splits, a json `split` field wins, and a json caption
    list (LAION-Audio-630K, WavCaps) becomes the `texts` column with the first as `text`."""

    def member(key: str, hz: float, fields: dict) -> list[tuple[str, bytes]]:
        return [(f"{key}.flac", audio_bytes("FLAC", hz)), (f"{key}.json", json.dumps(fields).encode())]

    root = tmp_path / "corpus"
    for split, keys in (("train", ("a", "b")), ("validation", ("c",))):
        (root / split).mkdir(parents=True)
        items = [
            m
            for k, key in enumerate(keys)
            for m in member(key, 300 + 40 * k, {"text": [f"{key} one", f"{key} two"], "duration": 0.1})
        ]
        if split == "train":
            items += member("d", 500, {"text": "d only", "split": "test"})
        (root / split / "00000.tar").write_bytes(tar_bytes(items))
    result = ingest(f"{root}/*/00000.tar", tmp_path / "w.lance", quiet=True)
    assert result.written == 4 and not result.rejected
    rows = read_rows(tmp_path / "w.lance")
    assert {i: r["split"] for i, r in rows.items()} == {
        "train/00000/a": "train",
        "train/00000/b": "train",
        "train/00000/d": "test",
        "validation/00000/c": "val",
    }
    assert rows["train/00000/a"]["texts"] == ["a one", "a two"] and rows["train/00000/a"]["text"] == "a one"
    assert rows["train/00000/d"]["texts"] is None and rows["train/00000/d"]["text"] == "d only"
    assert open_dataset(tmp_path / "w.lance").stats()["captions"] == {
        "rows": 3,
        "captions": 6,
        "max_per_row": 2,
    }
