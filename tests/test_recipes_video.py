"""Recipes for VGGSound, AudioSet, AVE and Hugging Face save_to_disk folders, each run as a user runs it on a tiny
fake tree in its official layout, then read back with `mmpt data info`."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import soundfile as sf

from mmpt.store.dataset import open_dataset
from tests.recipe_support import (
    data_info,
    image_bytes,
    load_recipe,
    run_recipe,
    write_audio,
    write_image,
    write_video,
)


def audio_seconds(uri: Path, row_id: str) -> float:
    """Length of a row's stored audio, to check that a clip window was applied."""
    ds = open_dataset(uri)
    ids = ds.lance.to_table(columns=["id"]).column("id").to_pylist()
    data = ds.read_blobs("audio", [ids.index(row_id)])[0]
    return sf.info(io.BytesIO(data)).duration


def rejected(report: Path) -> list[tuple[str, str]]:
    return [(r["id"], r["kind"]) for r in json.loads(report.read_text())["rejected"]]


# --- VGGSound ------------------------------------------------------------------------------------------


def fake_vggsound(root: Path) -> None:
    """vggsound.csv (no header) and clips: two cut clips (one silent, in a sub-folder), a whole video, one absent."""
    write_video(root / "video" / "-0jeONf82dE_000030.mp4", seed=1, seconds=1.0)
    write_video(root / "video" / "part1" / "--0PQM4-hqg_000000.mp4", seed=2, seconds=1.0, audio=False)
    write_video(root / "video" / "-2PDE7hUArE.mp4", seed=3, seconds=2.0)  # the whole video: clip 1..11 s
    (root / "vggsound.csv").write_text(
        "-0jeONf82dE,30,dog barking,train\n"
        '--0PQM4-hqg,0,"cattle, bovinae cowbell",train\n'
        "-2PDE7hUArE,1,dog barking,test\n"
        "-5ulF7Z4QDU,5,lions roaring,test\n"
    )


def test_vggsound_recipe_from_the_command_line(tmp_path):
    fake_vggsound(tmp_path / "VGGSound")
    out = tmp_path / "vggsound.lance"
    proc = run_recipe("vggsound", tmp_path / "VGGSound", "--out", out, "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    assert "VGGSound: 4 rows (test 2, train 2); 1 files not found" in proc.stderr
    assert f"wrote 3 rows to {out}, 1 rejected" in proc.stderr
    info = data_info(out)
    assert info["by_split"] == {
        "test": {"rows": 1, "image": 1, "audio": 1, "text": 1},
        "train": {"rows": 2, "image": 2, "audio": 1, "text": 2},
    }
    assert info["labels"] == {"dog barking": 2, "cattle, bovinae cowbell": 1}
    assert info["card"]["license"] == "annotations CC BY 4.0; videos: YouTube terms of service"
    assert rejected(tmp_path / "vggsound.report.json") == [("-5ulF7Z4QDU_000005", "missing_file")]
    table = open_dataset(out).lance.to_table(columns=["id", "text", "youtube_start"]).to_pylist()
    assert [r["id"] for r in table] == ["-0jeONf82dE_000030", "--0PQM4-hqg_000000", "-2PDE7hUArE_000001"]
    assert table[1]["text"] == "the sound of cattle, bovinae cowbell" and table[0]["youtube_start"] == 30
    assert audio_seconds(out, "-2PDE7hUArE_000001") == pytest.approx(1.0, abs=0.1)  # 1..11 s of a 2 s video


def test_vggsound_recipe_layout_and_missing_clip(tmp_path):
    recipe = load_recipe("vggsound")
    fake_vggsound(tmp_path / "v")
    counts = recipe.convert(tmp_path / "v", tmp_path / "m.jsonl")
    assert counts["missing_files"] == 1 and counts["splits"] == {"test": 2, "train": 2}
    rows = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert rows[3]["video"] == "v/video/-5ulF7Z4QDU_000005.mp4" and "start" not in rows[3]
    assert (rows[2]["start"], rows[2]["end"]) == (1, 11) and "start" not in rows[0]
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "vggsound.csv").write_text("a,1,dog,train\n")
    (tmp_path / "x" / "clips").mkdir()
    with pytest.raises(
        SystemExit, match=r"x/video not found; expected the VGGSound layout .* found in .*: clips/"
    ):
        recipe.convert(tmp_path / "x", tmp_path / "m2.jsonl")
    counts = recipe.convert(tmp_path / "x", tmp_path / "m2.jsonl", video_dir=tmp_path / "x" / "clips")
    assert (
        counts["missing_files"] == 1
        and '"video": "x/clips/a_000001.mp4"' in (tmp_path / "m2.jsonl").read_text()
    )
    (tmp_path / "x" / "vggsound.csv").write_text("a,1,dog,validation\n")
    (tmp_path / "x" / "video").mkdir()
    with pytest.raises(
        SystemExit, match=r"vggsound.csv line 1: expected youtube_id,start_seconds,label,train\|test"
    ):
        recipe.convert(tmp_path / "x", tmp_path / "m2.jsonl")


# --- AudioSet ------------------------------------------------------------------------------------------

HEADER = (
    "# Segments csv created Sun Mar  5 10:54:31 2017\n"
    "# num_ytids=4, num_segs=4, num_unique_labels=5, num_positive_labels=7\n"
    "# YTID, start_seconds, end_seconds, positive_labels\n"
)


def fake_audioset(root: Path) -> None:
    """The segment CSVs, class_labels_indices.csv, audio clips in two namings, a whole video, one absent clip."""
    (root / "class_labels_indices.csv").parent.mkdir(parents=True)
    (root / "class_labels_indices.csv").write_text(
        'index,mid,display_name\n0,/m/09x0r,"Speech"\n1,/m/05zppz,"Male speech, man speaking"\n'
        '2,/m/04rlf,"Music"\n3,/m/0bt9lr,"Dog"\n4,/m/05tny_,"Bark"\n'
    )
    (root / "balanced_train_segments.csv").write_text(
        HEADER + '--PJHxphWEs, 30.000, 40.000, "/m/09x0r,/m/05zppz"\n'
        '-0RWZT-miFs, 420.000, 430.000, "/m/0bt9lr,/m/05tny_"\n'
        '-1LrH01Ei1w, 0.000, 10.000, "/m/04rlf"\n'
        '-5xOcMJjc8s, 20.000, 30.000, "/m/04rlf"\n'
    )
    (root / "eval_segments.csv").write_text(
        HEADER + '--4gqARaEJE, 0.000, 10.000, "/m/0bt9lr,/m/05tny_"\n'
        '--BfvyPmVMo, 20.000, 30.000, "/m/09x0r"\n'
        '--U7joUcTCo, 0.000, 10.000, "/m/04rlf,/m/99zzz"\n'
    )
    (root / "unbalanced_train_segments.csv").write_text(HEADER + '---1_cCGK4M, 0.000, 10.000, "/m/09x0r"\n')
    balanced = root / "audio" / "balanced_train_segments"
    write_audio(balanced / "Y--PJHxphWEs_30.000_40.000.wav", seed=1)
    write_audio(balanced / "Y-0RWZT-miFs_420.000_430.000.wav", seed=2)
    write_video(root / "video" / "-1LrH01Ei1w.mp4", seed=3, seconds=1.0)  # no audio file: both from the video
    for k, ytid in enumerate(("--4gqARaEJE", "--BfvyPmVMo", "--U7joUcTCo")):
        write_audio(root / "audio" / "eval_segments" / f"Y{ytid}.flac", seed=4 + k)


def test_audioset_recipe_from_the_command_line_and_its_map(tmp_path, capsys):
    fake_audioset(tmp_path / "AudioSet")
    out = tmp_path / "audioset.lance"
    proc = run_recipe("audioset", tmp_path / "AudioSet", "--out", out, "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    assert (
        "warning: 1 labels name mids not in class_labels_indices.csv (kept as the mid): /m/99zzz"
        in proc.stderr
    )
    assert "AudioSet: 7 rows (test 3, train 4); 1 files not found" in proc.stderr
    info = data_info(out)
    assert info["by_split"] == {
        "test": {"rows": 3, "image": 0, "audio": 3, "text": 3},
        "train": {"rows": 3, "image": 1, "audio": 3, "text": 3},
    }
    assert info["multilabels"]["rows"] == 6
    assert info["multilabels"]["labels"] == {
        "Bark": 2,
        "Dog": 2,
        "Music": 2,
        "Speech": 2,
        "/m/99zzz": 1,
        "Male speech, man speaking": 1,
    }
    assert info["card"]["license"].startswith("annotations CC BY 4.0, ontology CC BY-SA 4.0")
    assert rejected(tmp_path / "audioset.report.json") == [("-5xOcMJjc8s", "missing_file")]
    row = open_dataset(out).lance.to_table(columns=["id", "text", "label", "subset"]).to_pylist()[0]
    assert row == {
        "id": "--PJHxphWEs",
        "text": "the sound of Speech and Male speech, man speaking",
        "label": "Speech",
        "subset": "balanced_train",
    }

    from mmpt.cli import main
    from mmpt.models import build_model, preset_config, save_model

    run = save_model(build_model(preset_config("tiny")), tmp_path / "run" / "step-0000001")
    main(["eval", "--run", str(run), "--data", str(out), "--device", "cpu", "--quiet", "--json"])
    entry = json.loads(capsys.readouterr().out)["zero_shot"]["audio"]
    assert 0.0 < entry["mAP"] <= 1.0 and entry["n_multilabel_rows"] == 3
    assert set(entry["ap_per_class"]) == {"Bark", "Dog", "Music", "Speech", "/m/99zzz"}


def test_audioset_recipe_layout_unbalanced_and_missing_clip(tmp_path):
    recipe = load_recipe("audioset")
    fake_audioset(tmp_path / "a")
    counts = recipe.convert(tmp_path / "a", tmp_path / "m.jsonl", unbalanced=True)
    assert (
        counts["rows"] == 8 and counts["splits"] == {"test": 3, "train": 5} and counts["missing_files"] == 2
    )
    rows = {r["id"]: r for r in map(json.loads, (tmp_path / "m.jsonl").read_text().splitlines())}
    assert rows["-5xOcMJjc8s"]["audio"] == "a/audio/balanced_train_segments/Y-5xOcMJjc8s_20.000_30.000.wav"
    assert rows["---1_cCGK4M"]["audio"] == "a/audio/unbalanced_train_segments/Y---1_cCGK4M_0.000_10.000.wav"
    assert rows["-1LrH01Ei1w"]["video"] == "a/video/-1LrH01Ei1w.mp4" and rows["-1LrH01Ei1w"]["end"] == 10.0
    assert rows["--U7joUcTCo"]["labels"] == ["Music", "/m/99zzz"] and rows["--U7joUcTCo"]["split"] == "test"
    (tmp_path / "a" / "eval_segments.csv").rename(tmp_path / "a" / "eval_segments_v2.csv")
    with pytest.raises(
        SystemExit, match=r"eval_segments.csv not found; expected the AudioSet layout .*: audio/"
    ):
        recipe.convert(tmp_path / "a", tmp_path / "m2.jsonl")


# --- AVE -----------------------------------------------------------------------------------------------

AVE_HEADER = "Category&VideoID&Quality&StartTime&EndTime\n"


def fake_ave(root: Path) -> None:
    """AVE_Dataset/ with AVE/<VideoID>.mp4 (2 s each), Annotations.txt and the three split files."""
    data = root / "AVE_Dataset"
    for k, video in enumerate(("RUhOCu3LNXM", "MFmDE3fXfKA", "fAr16uG2Kiw", "qlM4TFbXmqk")):
        write_video(data / "AVE" / f"{video}.mp4", seed=k, seconds=2.0)
    (data / "Annotations.txt").write_text(
        AVE_HEADER + "Church bell&RUhOCu3LNXM&good&0&1\nChurch bell&RUhOCu3LNXM&good&1&2\n"
        "Male speech, man speaking&MFmDE3fXfKA&good&0&2\nBark&fAr16uG2Kiw&good&1&2\n"
        "Bark&yzaGk1n8rWE&good&0&2\nBanjo&qlM4TFbXmqk&good&0&2\n"
    )
    (data / "trainSet.txt").write_text(
        AVE_HEADER + "Church bell&RUhOCu3LNXM&good&0&1\nChurch bell&RUhOCu3LNXM&good&1&2\n"
        "Male speech, man speaking&MFmDE3fXfKA&good&0&2\n"
    )
    (data / "valSet.txt").write_text(AVE_HEADER + "Bark&fAr16uG2Kiw&good&1&2\n")
    (data / "testSet.txt").write_text(AVE_HEADER + "Bark&yzaGk1n8rWE&good&0&2\nBark&fAr16uG2Kiw&good&0&1\n")


def test_ave_recipe_from_the_command_line(tmp_path):
    fake_ave(tmp_path)
    out = tmp_path / "ave.lance"
    proc = run_recipe("ave", tmp_path / "AVE_Dataset", "--out", out, "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    assert "warning: 1 split-file events are not in Annotations.txt (kept)" in proc.stderr
    assert "warning: 1 Annotations.txt events are in no split file (left out)" in proc.stderr
    assert "AVE: 6 rows (test 2, train 3, val 1); 1 files not found" in proc.stderr
    info = data_info(out)
    assert info["by_split"] == {
        "test": {"rows": 1, "image": 1, "audio": 1, "text": 1},
        "train": {"rows": 3, "image": 3, "audio": 3, "text": 3},
        "val": {"rows": 1, "image": 1, "audio": 1, "text": 1},
    }
    assert info["labels"] == {"Bark": 2, "Church bell": 2, "Male speech, man speaking": 1}
    assert info["card"]["license"].startswith("not stated by the authors")
    assert rejected(tmp_path / "ave.report.json") == [("yzaGk1n8rWE_0_2", "missing_file")]
    ids = open_dataset(out).lance.to_table(columns=["id"]).column("id").to_pylist()
    assert ids == [
        "RUhOCu3LNXM_0_1",
        "RUhOCu3LNXM_1_2",
        "MFmDE3fXfKA_0_2",
        "fAr16uG2Kiw_1_2",
        "fAr16uG2Kiw_0_1",
    ]
    assert audio_seconds(out, "RUhOCu3LNXM_1_2") == pytest.approx(1.0, abs=0.1)  # the event's window only
    assert audio_seconds(out, "MFmDE3fXfKA_0_2") == pytest.approx(2.0, abs=0.1)


def test_ave_recipe_layout_and_missing_video(tmp_path):
    recipe = load_recipe("ave")
    fake_ave(tmp_path)
    (tmp_path / "AVE_Dataset" / "AVE" / "MFmDE3fXfKA.mp4").unlink()
    counts = recipe.convert(tmp_path, tmp_path / "m.jsonl")  # the folder holding AVE_Dataset works too
    assert counts["missing_files"] == 2 and counts["splits"] == {"test": 2, "train": 3, "val": 1}
    row = json.loads((tmp_path / "m.jsonl").read_text().splitlines()[2])
    assert row["video"] == "AVE_Dataset/AVE/MFmDE3fXfKA.mp4" and (row["start"], row["end"]) == (0, 2)
    assert row["label"] == "Male speech, man speaking" and row["quality"] == "good"
    (tmp_path / "AVE_Dataset" / "testSet.txt").rename(tmp_path / "AVE_Dataset" / "test.txt")
    with pytest.raises(
        SystemExit, match=r"testSet.txt not found; expected the AVE_Dataset layout .*: AVE/, "
    ):
        recipe.convert(tmp_path, tmp_path / "m2.jsonl")
    (tmp_path / "AVE_Dataset" / "test.txt").rename(tmp_path / "AVE_Dataset" / "testSet.txt")
    (tmp_path / "AVE_Dataset" / "valSet.txt").write_text("Bark&fAr16uG2Kiw&good&1\n")
    with pytest.raises(
        SystemExit, match=r"valSet.txt line 1: expected Category&VideoID&Quality&StartTime&EndTime"
    ):
        recipe.convert(tmp_path, tmp_path / "m2.jsonl")


# --- Hugging Face save_to_disk -------------------------------------------------------------------------


def hf_part(tmp_path: Path, seeds: list[int]) -> object:
    """A Dataset with Image and Audio features (as encoded bytes: no torchcodec needed), captions, a ClassLabel."""
    from datasets import Audio, ClassLabel, Dataset, Features, Image, Value

    images = [{"bytes": image_bytes(s), "path": f"img{s}.jpg"} for s in seeds]
    audios = []
    for s in seeds:
        write_audio(tmp_path / "media" / f"a{s}.wav", seed=s)
        audios.append({"bytes": (tmp_path / "media" / f"a{s}.wav").read_bytes(), "path": f"a{s}.wav"})
    data = {
        "image": images,
        "audio": audios,
        "sentence": [f"caption {s}" for s in seeds],
        "label": [s % 2 for s in seeds],
    }
    features = Features(
        {
            "image": Image(),
            "audio": Audio(),
            "sentence": Value("string"),
            "label": ClassLabel(names=["cat", "dog"]),
        }
    )
    part = Dataset.from_dict(data).cast(
        features
    )  # cast, not from_dict(features=): encoding audio needs torchcodec
    part.info.license, part.info.homepage = "CC BY 4.0", "https://example.org/pets"
    return part


def test_hf_disk_recipe_from_the_command_line(tmp_path):
    from datasets import DatasetDict

    saved = tmp_path / "pets"
    parts = {"train": [0, 1, 2], "validation": [3], "test": [4, 5]}
    DatasetDict({k: hf_part(tmp_path, v) for k, v in parts.items()}).save_to_disk(str(saved))
    out = tmp_path / "pets.lance"
    proc = run_recipe(
        "hf_disk", saved, "--out", out, "--text-col", "sentence", "--name", "Pets", "--workers", "1"
    )
    assert proc.returncode == 0, proc.stderr
    assert f"Pets: 6 rows (test 2, train 3, val 1); wrote 6 rows to {out}" in proc.stderr
    info = data_info(out)
    assert info["by_split"] == {
        "test": {"rows": 2, "image": 2, "audio": 2, "text": 2},
        "train": {"rows": 3, "image": 3, "audio": 3, "text": 3},
        "val": {"rows": 1, "image": 1, "audio": 1, "text": 1},
    }
    assert info["labels"] == {"cat": 3, "dog": 3}
    assert info["card"]["name"] == "Pets" and info["card"]["license"] == "CC BY 4.0"
    assert info["card"]["homepage"] == "https://example.org/pets"
    table = open_dataset(out).lance.to_table(columns=["id", "text"]).to_pylist()
    assert table[0] == {"id": "train-000000", "text": "caption 0"} and table[3]["id"] == "validation-000000"


def test_hf_disk_recipe_layout_split_names_and_label_captions(tmp_path):
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    recipe = load_recipe("hf_disk")
    paths = [str(tmp_path / "media" / f"{k}.png") for k in range(3)]  # images as path strings, one absent
    for path in paths[:2]:
        write_image(Path(path), seed=1)
    features = Features({"image": Value("string"), "label": ClassLabel(names=["cat", "dog"])})
    Dataset.from_dict({"image": paths, "label": [0, 1, 1]}, features=features).save_to_disk(
        str(tmp_path / "one")
    )
    counts = recipe.convert(tmp_path / "one", tmp_path / "one.lance")
    assert counts["missing_files"] == 1 and counts["splits"] == {"auto": 3}
    assert counts["written"] == 2 and counts["rejected"] == 1
    assert rejected(tmp_path / "one.report.json") == [("row-000002", "missing_file")]
    table = open_dataset(tmp_path / "one.lance").lance.to_table(columns=["id", "text", "label"]).to_pylist()
    assert [(r["id"], r["text"], r["label"]) for r in table] == [
        ("row-000000", "a photo of cat", "cat"),
        ("row-000001", "a photo of dog", "dog"),
    ]
    DatasetDict({"train": hf_part(tmp_path, [0]), "unsupervised": hf_part(tmp_path, [1])}).save_to_disk(
        str(tmp_path / "dd")
    )
    with pytest.raises(SystemExit, match=r"split 'unsupervised' of .* map it with --split-map unsupervised="):
        recipe.rows_of(tmp_path / "dd")
    dataset, roles = recipe.rows_of(tmp_path / "dd", {"text": "sentence"}, {"unsupervised": "skip"})
    assert len(dataset) == 1 and roles["text"] == "sentence" and roles["split"] == "split"
    with pytest.raises(SystemExit, match=r"no column 'caption' for --text-col; the dataset has image, audio"):
        recipe.rows_of(tmp_path / "dd", {"text": "caption"}, {"unsupervised": "skip"})
    (tmp_path / "arrow").mkdir()
    (tmp_path / "arrow" / "data-00000-of-00001.arrow").write_bytes(b"")
    with pytest.raises(
        SystemExit, match=r"arrow/dataset_dict.json not found; expected a folder written by datasets"
    ):
        recipe.convert(tmp_path / "arrow", tmp_path / "x.lance")
