"""Image-caption and spoken-caption recipes (Flickr8k audio, SpokenCOCO, Places Audio, COCO, Flickr30k, CC3M), each
run as a user runs it on a tiny fake tree in the corpus's official layout, then read back with `mmpt data info`."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.recipe_support import (
    data_info,
    image_bytes,
    load_recipe,
    run_recipe,
    write_audio,
    write_image,
    write_tar,
)


def ok(proc) -> str:
    assert proc.returncode == 0, proc.stderr
    return proc.stderr


def rejected_kinds(report: Path) -> list[str]:
    return [r["kind"] for r in json.loads(report.read_text())["rejected"]]


# --- Flickr8k + Flickr Audio Caption Corpus -------------------------------------------------------------------

F8K = ("1000268201_693b08cb0e", "1001773457_577c3a7d70", "1002674143_1b742ab4b8")


def fake_flickr8k_audio(root: Path, speech: Path, missing_wav: str | None = None) -> None:
    """Flicker8k_Dataset/ (sic), the text files in Flickr8k_text/, flickr_audio/ under `speech`."""
    for k, stem in enumerate(F8K):
        write_image(root / "Flicker8k_Dataset" / f"{stem}.jpg", seed=k)
    text = root / "Flickr8k_text"
    text.mkdir(parents=True)
    tokens = [f"{F8K[0]}.jpg#0\tA child in a pink dress .", f"{F8K[0]}.jpg#1\tA girl going into a building ."]
    tokens += [f"{F8K[1]}.jpg#0\tA black dog and a spotted dog .", f"{F8K[1]}.jpg#1\tTwo dogs on a road ."]
    tokens += [f"{F8K[2]}.jpg#0\tA little girl covered in paint ."]  # no #1: its spoken caption has no text
    (text / "Flickr8k.token.txt").write_text("\n".join(tokens) + "\n")
    for name, stem in (("train", F8K[0]), ("dev", F8K[1]), ("test", F8K[2])):
        (text / f"Flickr_8k.{name}Images.txt").write_text(f"{stem}.jpg\n")
    audio = speech / "flickr_audio"
    capt, spk = [], []
    for k, stem in enumerate(F8K):
        for n in (0, 1):
            wav = f"{stem}_{n}.wav"
            if wav != missing_wav:
                write_audio(audio / "wavs" / wav, seed=2 * k + n)
            capt.append(f"{wav} {stem}.jpg #{n}")
            spk.append(f"{wav} {10 + k}")
    (audio / "wav2capt.txt").write_text("\n".join(capt) + "\n")
    (audio / "wav2spk.txt").write_text("\n".join(spk) + "\n")


def test_flickr8k_audio_recipe_command_line(tmp_path):
    root, speech = tmp_path / "flickr8k", tmp_path / "speech"
    fake_flickr8k_audio(root, speech, missing_wav=f"{F8K[1]}_1.wav")
    out = tmp_path / "f8k.lance"
    err = ok(run_recipe("flickr8k_audio", root, "--audio", speech, "--out", out, "--workers", "1"))
    assert "Flickr8k Audio: 6 rows (test 2, train 2, val 2); 1 files not found" in err
    assert f"wrote 5 rows to {out}" in err and "1 spoken captions have no written caption" in err
    info = data_info(out)
    assert info["by_split"] == {
        "test": {"rows": 2, "image": 2, "audio": 2, "text": 1},
        "train": {"rows": 2, "image": 2, "audio": 2, "text": 2},
        "val": {"rows": 1, "image": 1, "audio": 1, "text": 1},
    }
    assert info["card"]["license"].startswith("spoken captions CC BY-SA")
    assert info["metadata_columns"].keys() >= {"image_id", "caption_n", "speaker"}
    assert rejected_kinds(tmp_path / "f8k.report.json") == ["missing_file"]


def test_flickr8k_audio_recipe_layout_and_missing_image(tmp_path):
    recipe = load_recipe("flickr8k_audio")
    fake_flickr8k_audio(tmp_path, tmp_path)
    (tmp_path / "Flicker8k_Dataset" / f"{F8K[2]}.jpg").unlink()
    counts = recipe.convert(tmp_path, tmp_path / "m.jsonl")
    assert (
        counts["rows"] == 6 and counts["missing_files"] == 2
    )  # both spoken captions of the absent image stay
    (tmp_path / "Flicker8k_Dataset").rename(tmp_path / "images")
    with pytest.raises(
        SystemExit, match=r"Flicker8k_Dataset not found; expected .* found in .*: Flickr8k_text/"
    ):
        recipe.convert(tmp_path, tmp_path / "m.jsonl")


# --- SpokenCOCO -------------------------------------------------------------------------------------------------


def fake_spokencoco(coco: Path, missing_wav: str | None = None) -> None:
    """coco/SpokenCOCO/{SpokenCOCO_train.json, SpokenCOCO_val.json, wavs/}, coco/train2014/, coco/val2014/."""
    images = [
        ("train", "train2014/COCO_train2014_000000000009.jpg"),
        ("train", "val2014/COCO_val2014_000000000042.jpg"),
    ]
    images += [("val", "val2014/COCO_val2014_000000000073.jpg")]
    data: dict[str, list] = {"train": [], "val": []}
    for k, (split, image) in enumerate(images):
        write_image(coco / image, seed=k)
        captions = []
        for n in (0, 1):
            uttid = f"m{k}spk-3A{k}{n}_{k}_{n}"
            wav = f"wavs/{split}/0/{uttid}.wav"
            if uttid != missing_wav:
                write_audio(coco / "SpokenCOCO" / wav, seed=2 * k + n)
            captions.append(
                {"text": f"A PHOTO NUMBER {k} TAKE {n}", "speaker": f"m{k}spk", "uttid": uttid, "wav": wav}
            )
        data[split].append({"image": image, "captions": captions})
    for split, items in data.items():
        (coco / "SpokenCOCO" / f"SpokenCOCO_{split}.json").write_text(json.dumps({"data": items}))


def karpathy_file(path: Path, images: list[tuple[str, int, str, list[str]]], dataset: str = "coco") -> Path:
    """Karpathy's split file: {"images": [{"filename", "cocoid"/"imgid", "split", "sentences": [{"raw"}]}]}."""
    entries = []
    for k, (filename, ident, split, raws) in enumerate(images):
        sentences = [
            {"tokens": raw.lower().split(), "raw": raw, "imgid": k, "sentid": 5 * k + n}
            for n, raw in enumerate(raws)
        ]
        entry = {"filename": filename, "imgid": k, "split": split, "sentences": sentences, "sentids": [5 * k]}
        if dataset == "coco":
            entry.update(filepath=filename.split("_")[1], cocoid=ident)
        entries.append(entry)
    path.write_text(json.dumps({"images": entries, "dataset": dataset}))
    return path


def test_spokencoco_recipe_command_line_with_karpathy_splits(tmp_path):
    coco = tmp_path / "coco"
    fake_spokencoco(coco, missing_wav="m2spk-3A21_2_1")
    split_file = karpathy_file(
        tmp_path / "dataset_coco.json",
        [
            ("COCO_train2014_000000000009.jpg", 9, "train", ["a"]),
            ("COCO_val2014_000000000042.jpg", 42, "test", ["b"]),
            ("COCO_val2014_000000000073.jpg", 73, "restval", ["c"]),
        ],
    )
    out = tmp_path / "spokencoco.lance"
    args = ("--karpathy", split_file, "--out", out, "--workers", "1")
    err = ok(run_recipe("spokencoco", coco / "SpokenCOCO", *args))
    assert (
        "SpokenCOCO: 6 rows (test 2, train 4); 1 files not found" in err and f"wrote 5 rows to {out}" in err
    )
    info = data_info(out)
    assert info["by_split"] == {
        "test": {"rows": 2, "image": 2, "audio": 2, "text": 2},
        "train": {"rows": 3, "image": 3, "audio": 3, "text": 3},
    }
    assert info["card"]["license"].startswith("spoken captions CC BY-SA 4.0")
    assert rejected_kinds(tmp_path / "spokencoco.report.json") == ["missing_file"]


def test_spokencoco_recipe_splits_layout_and_missing_image(tmp_path):
    recipe = load_recipe("spokencoco")
    fake_spokencoco(tmp_path)
    (tmp_path / "val2014" / "COCO_val2014_000000000073.jpg").unlink()
    counts = recipe.convert(tmp_path / "SpokenCOCO", tmp_path / "m.jsonl")
    assert counts["splits"] == {"train": 4, "val": 2} and counts["missing_files"] == 2
    rows = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert rows[0]["id"] == "m0spk-3A00_0_0" and rows[0]["image_id"] == "COCO_train2014_000000000009"
    with pytest.raises(SystemExit, match=r"train2014 not found; expected the COCO 2014 images"):
        recipe.convert(tmp_path / "SpokenCOCO", tmp_path / "m.jsonl", images=tmp_path / "SpokenCOCO")
    (tmp_path / "SpokenCOCO" / "SpokenCOCO_val.json").rename(tmp_path / "SpokenCOCO" / "val.json")
    with pytest.raises(
        SystemExit, match=r"SpokenCOCO_val.json not found; .* found in .*: SpokenCOCO_train.json"
    ):
        recipe.convert(tmp_path / "SpokenCOCO", tmp_path / "m.jsonl")


# --- Places Audio Captions ----------------------------------------------------------------------------------------


def fake_places_audio(distro: Path, images: Path) -> None:
    """PlacesAudio_400k_distro/{metadata/train.json, metadata/val.json, wavs/} and Places205-style images."""
    entries = {"train": [], "val": []}
    for k, (split, image) in enumerate(
        [
            ("train", "a/abbey/gsun_0a1.jpg"),
            ("train", "b/beach/gsun_0b2.jpg"),
            ("train", "s/shower/gsun_0c3.jpg"),
        ]
        + [("val", "k/kitchen/gsun_0d4.jpg")]
    ):
        write_image(images / image, seed=k)
        wav = f"wavs/{k % 2}/utterance_{100 + k}.wav"
        write_audio(distro / wav, seed=k)
        entries[split].append(
            {
                "uttid": f"A{k}X-GSUN_{k}",
                "speaker": f"A{k}X",
                "asr_text": f"a place number {k}",
                "wav": wav,
                "image": image,
            }
        )
    for split, data in entries.items():
        meta = {
            "image_base_path": "/data/places205/images256",
            "audio_base_path": "/data/PlacesAudio",
            "data": data,
        }
        (distro / "metadata").mkdir(parents=True, exist_ok=True)
        (distro / "metadata" / f"{split}.json").write_text(json.dumps(meta))


def test_places_audio_recipe_command_line(tmp_path):
    distro, images = tmp_path / "PlacesAudio_400k_distro", tmp_path / "images256"
    fake_places_audio(distro, images)
    (images / "b/beach/gsun_0b2.jpg").unlink()
    out = tmp_path / "places.lance"
    err = ok(run_recipe("places_audio", distro, "--images", images, "--out", out, "--workers", "1"))
    assert (
        "Places Audio: 4 rows (train 3, val 1); 1 files not found" in err and f"wrote 3 rows to {out}" in err
    )
    info = data_info(out)
    assert info["by_split"] == {
        "train": {"rows": 2, "image": 2, "audio": 2, "text": 2},
        "val": {"rows": 1, "image": 1, "audio": 1, "text": 1},
    }
    assert "Places205" in info["card"]["license"] and "ASR" in info["card"]["notes"]
    assert rejected_kinds(tmp_path / "places.report.json") == ["missing_file"]


def test_places_audio_recipe_layout_and_missing_wav(tmp_path):
    recipe = load_recipe("places_audio")
    distro, images = tmp_path / "PlacesAudio_400k_distro", tmp_path / "images256"
    fake_places_audio(distro, images)
    (distro / "wavs" / "1" / "utterance_101.wav").unlink()
    counts = recipe.convert(distro, tmp_path / "m.csv", images=images)
    assert counts["rows"] == 4 and counts["missing_files"] == 1 and counts["splits"] == {"train": 3, "val": 1}
    with pytest.raises(
        SystemExit, match=r"Places205 images not found: pass --images .*/data/places205/images256"
    ):
        recipe.convert(distro, tmp_path / "m.csv")
    (distro / "metadata" / "val.json").unlink()
    with pytest.raises(SystemExit, match=r"metadata/val.json not found; expected .* found in .*: train.json"):
        recipe.convert(distro, tmp_path / "m.csv", images=images)


# --- COCO Captions 2017 -------------------------------------------------------------------------------------------


def fake_coco(root: Path) -> None:
    """annotations/captions_{train,val}2017.json and train2017/, val2017/ jpgs: 3 + 2 images, 2-3 captions each."""
    licenses = [{"id": 1, "name": "Attribution-NonCommercial-ShareAlike License", "url": "http://..."}]
    layout = {"train2017": [9, 25, 30], "val2017": [139, 285]}
    note_id = 1
    for folder, ids in layout.items():
        images, notes = [], []
        for k, coco_id in enumerate(ids):
            name = f"{coco_id:012d}.jpg"
            write_image(root / folder / name, seed=coco_id)
            images.append({"id": coco_id, "file_name": name, "width": 48, "height": 32, "license": 1})
            for n in range(2 + k % 2):
                notes.append(
                    {"image_id": coco_id, "id": note_id, "caption": f"Image {coco_id} caption {n}. "}
                )
                note_id += 1
        if folder == "train2017":
            notes.append({"image_id": 999, "id": note_id, "caption": "A caption of no listed image."})
        data = {"info": {}, "licenses": licenses, "images": images, "annotations": notes}
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / f"captions_{folder}.json").write_text(json.dumps(data))


def test_coco_captions_recipe_command_line_with_karpathy_splits(tmp_path):
    fake_coco(tmp_path / "coco")
    (tmp_path / "coco" / "train2017" / "000000000030.jpg").unlink()
    split_file = karpathy_file(
        tmp_path / "dataset_coco.json",
        [
            ("COCO_train2014_000000000009.jpg", 9, "train", ["x"]),
            ("COCO_val2014_000000000025.jpg", 25, "test", ["x"]),
            ("COCO_val2014_000000000030.jpg", 30, "restval", ["x"]),
            ("COCO_val2014_000000000139.jpg", 139, "test", ["x"]),
            ("COCO_val2014_000000000285.jpg", 285, "val", ["x"]),
            ("COCO_val2014_000000000777.jpg", 777, "test", ["x"]),
        ],
    )
    out = tmp_path / "coco.lance"
    err = ok(
        run_recipe(
            "coco_captions", tmp_path / "coco", "--karpathy", split_file, "--out", out, "--workers", "1"
        )
    )
    assert "COCO Captions: 5 rows (test 2, train 2, val 1); 1 files not found" in err
    assert "1 captions name an image not in their annotation file" in err
    assert "1 Karpathy images are not in the annotations" in err
    info = data_info(out)
    assert info["by_split"] == {
        "test": {"rows": 2, "image": 2, "text": 2},
        "train": {"rows": 1, "image": 1, "text": 1},
        "val": {"rows": 1, "image": 1, "text": 1},
    }
    assert info["captions"] == {"rows": 4, "captions": 10, "max_per_row": 3}
    assert info["card"]["license"].startswith("annotations CC BY 4.0; images: Flickr terms of use")


def test_coco_captions_recipe_default_splits_layout_and_missing_image(tmp_path):
    recipe = load_recipe("coco_captions")
    fake_coco(tmp_path)
    (tmp_path / "val2017" / "000000000139.jpg").unlink()
    counts = recipe.convert(tmp_path, tmp_path / "m.jsonl")
    assert counts["splits"] == {"train": 3, "val": 2} and counts["missing_files"] == 1
    row = json.loads((tmp_path / "m.jsonl").read_text().splitlines()[1])
    assert row["texts"] == ["Image 25 caption 0.", "Image 25 caption 1.", "Image 25 caption 2."]
    assert row["id"] == "000000000025" and row["image_license"].startswith("Attribution-NonCommercial")
    (tmp_path / "annotations" / "captions_val2017.json").rename(
        tmp_path / "annotations" / "captions_val2014.json"
    )
    with pytest.raises(
        SystemExit,
        match=r"captions_val2017.json not found; .* found in .*: captions_train2017.json, captions_val2014.json",
    ):
        recipe.convert(tmp_path, tmp_path / "m.jsonl")


# --- Flickr30k ------------------------------------------------------------------------------------------------------


def fake_flickr30k(root: Path) -> None:
    """flickr30k-images/*.jpg and dataset_flickr30k.json: 5 images (3 train, 1 val, 1 test), 5 captions each."""
    entries = []
    for k, (stem, split) in enumerate(
        [("1000092795", "train"), ("10002456", "train"), ("1000268201", "train"), ("1000344755", "val")]
        + [("1000366164", "test")]
    ):
        write_image(root / "flickr30k-images" / f"{stem}.jpg", seed=k)
        entries.append((f"{stem}.jpg", k, split, [f"Photo {k}, caption {n} ." for n in range(5)]))
    karpathy_file(root / "dataset_flickr30k.json", entries, dataset="flickr30k")


def test_flickr30k_recipe_command_line(tmp_path):
    fake_flickr30k(tmp_path / "f30k")
    (tmp_path / "f30k" / "flickr30k-images" / "10002456.jpg").unlink()
    out = tmp_path / "f30k.lance"
    err = ok(run_recipe("flickr30k", tmp_path / "f30k", "--out", out, "--workers", "1"))
    assert (
        "Flickr30k: 5 rows (test 1, train 3, val 1); 1 files not found" in err
        and f"wrote 4 rows to {out}" in err
    )
    info = data_info(out)
    assert info["by_split"] == {
        "test": {"rows": 1, "image": 1, "text": 1},
        "train": {"rows": 2, "image": 2, "text": 2},
        "val": {"rows": 1, "image": 1, "text": 1},
    }
    assert info["captions"] == {"rows": 4, "captions": 20, "max_per_row": 5}
    assert info["card"]["license"].endswith("images: Flickr terms of use")


def test_flickr30k_recipe_layout_and_missing_image(tmp_path):
    recipe = load_recipe("flickr30k")
    fake_flickr30k(tmp_path)
    (tmp_path / "flickr30k-images" / "1000366164.jpg").unlink()
    counts = recipe.convert(tmp_path, tmp_path / "m.jsonl")
    assert counts["rows"] == 5 and counts["missing_files"] == 1 and counts["splits"]["test"] == 1
    (tmp_path / "dataset_flickr30k.json").rename(tmp_path / "dataset_coco.json")
    with pytest.raises(
        SystemExit, match=r"dataset_flickr30k.json not found; .* found in .*: dataset_coco.json"
    ):
        recipe.convert(tmp_path, tmp_path / "m.jsonl")
    (tmp_path / "bad.json").write_text(json.dumps({"annotations": []}))
    with pytest.raises(
        SystemExit, match=r'bad.json is not a Karpathy split file: no top-level "images" list'
    ):
        recipe.convert(tmp_path, tmp_path / "m.jsonl", karpathy=tmp_path / "bad.json")


# --- CC3M (img2dataset webdataset shards) -----------------------------------------------------------------------


def write_shard(
    folder: Path, shard: int, keys: list[int], corrupt: int | None = None, failed: int = 0
) -> None:
    """NNNNN.tar (KEY.jpg, KEY.txt, KEY.json), NNNNN.parquet and NNNNN_stats.json, as img2dataset writes them."""
    members = []
    for key in keys:
        name = f"{shard:05d}{key:04d}"
        jpg = image_bytes(key)[:40] if key == corrupt else image_bytes(key)
        meta = {"url": f"http://img.example/{name}.jpg", "caption": f"a picture number {key}", "key": name}
        meta.update(
            status="success", error_message=None, width=48, height=32, original_width=480, original_height=320
        )
        members += [
            (f"{name}.jpg", jpg),
            (f"{name}.txt", meta["caption"].encode()),
            (f"{name}.json", json.dumps(meta).encode()),
        ]
    write_tar(folder / f"{shard:05d}.tar", members)
    pq.write_table(
        pa.table({"key": [f"{shard:05d}{k:04d}" for k in keys], "status": ["success"] * len(keys)}),
        folder / f"{shard:05d}.parquet",
    )
    stats = {
        "count": len(keys) + failed,
        "successes": len(keys),
        "failed_to_download": failed,
        "failed_to_resize": 0,
    }
    stats.update(duration=1.5, status_dict={"success": len(keys), "Connection refused": failed})
    (folder / f"{shard:05d}_stats.json").write_text(json.dumps(stats, indent=4))


def test_cc3m_recipe_command_line_with_split_folders_and_a_corrupt_member(tmp_path):
    root = tmp_path / "cc3m"
    write_shard(root / "train", 0, [1, 2, 3], failed=2)
    write_shard(root / "train", 1, [4, 5], corrupt=5, failed=1)
    write_shard(root / "validation", 0, [6, 7], failed=4)
    out = tmp_path / "cc3m.lance"
    err = ok(run_recipe("cc3m", root, "--out", out, "--workers", "1"))
    assert "CC3M: 7 rows (train 5, val 2); wrote 6 rows" in err and "1 rejected" in err
    assert "7 of 14 urls failed to download (0 failed to resize; img2dataset stats of 3 shards)" in err
    info = data_info(out)
    assert info["by_split"] == {
        "train": {"rows": 4, "image": 4, "text": 4},
        "val": {"rows": 2, "image": 2, "text": 2},
    }
    assert info["card"]["license"].startswith("captions: free for any purpose")
    assert {"url", "status", "width", "original_height"} <= info["metadata_columns"].keys()
    report = json.loads((tmp_path / "cc3m.report.json").read_text())
    assert [(r["kind"], r["id"]) for r in report["rejected"]] == [("corrupt_image", "train/00001/000010005")]


def test_cc3m_recipe_flat_folder_takes_split_and_refuses_other_layouts(tmp_path):
    recipe = load_recipe("cc3m")
    write_shard(tmp_path / "shards", 0, [1, 2])
    counts = recipe.convert(tmp_path / "shards", tmp_path / "val.lance", split="val", quiet=True)
    assert counts["splits"] == {"val": 2} and counts["written"] == 2
    assert counts["notes"] == [
        "0 of 2 urls failed to download (0 failed to resize; img2dataset stats of 1 shards)"
    ]
    (tmp_path / "shards" / "00000.tar").unlink()
    with pytest.raises(
        SystemExit, match=r"00000.tar not found; expected img2dataset .* found in .*: 00000.parquet"
    ):
        recipe.convert(tmp_path / "shards", tmp_path / "x.lance")
    write_shard(tmp_path / "test" / "shards", 0, [1])  # a split name higher up the path does not count
    counts = recipe.convert(tmp_path / "test" / "shards", tmp_path / "t.lance", quiet=True)
    assert counts["splits"] == {"train": 1} and counts["written"] == 1
    write_shard(tmp_path / "flat" / "test", 0, [1])  # the folder holding the shards does
    with pytest.raises(SystemExit, match=r"lies in a folder read as the test split; move the shards"):
        recipe.convert(tmp_path / "flat" / "test", tmp_path / "x.lance")
