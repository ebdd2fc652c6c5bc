"""Audio corpus recipes (AudioCaps, Clotho, UrbanSound8K, WavCaps, LAION-Audio-630K) on tiny fake trees in each
corpus's official layout: run as a user runs them, read back with `mmpt data info`, and evaluated with the
protocol that uses the corpus."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import soundfile as sf

from mmpt.cli import main as mmpt_main
from mmpt.models import build_model, preset_config, save_model
from tests.recipe_support import data_info, load_recipe, run_recipe, tone, write_audio, write_tar


def write_csv(path: Path, header: list[str], rows: list[list], encoding: str = "utf-8") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding=encoding) as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def ran(proc) -> str:
    assert proc.returncode == 0, proc.stderr
    return proc.stderr


def manifest(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# --- AudioCaps ---------------------------------------------------------------------------------------------

AUDIOCAPS = {  # split -> [(youtube_id, start_time, captions)]
    "train": [("-0RWZT-miFs", 30, 1), ("2j8pxw2eTKU", 0, 1), ("7fmOlUlwoNg", 20, 1)],
    "val": [("b0RFKhbpFJA", 10, 5)],
    "test": [("--0w1YA1Hm4", 30, 5), ("zJpKzqRdBmo", 70, 5)],
}


def fake_audiocaps(root: Path, naming: str = "split", missing: str | None = None) -> None:
    """dataset/{train,val,test}.csv (one row per caption) and clips named as a downloader writes them."""
    number = 100
    for split, clips in AUDIOCAPS.items():
        rows = []
        for ytid, start, n in clips:
            for c in range(n):
                number += 1
                rows.append([number, ytid, start, f"{ytid} {split} caption {c}"])
            if ytid == missing:
                continue
            name = {
                "split": f"audio/{split}/{ytid}.wav",
                "Y": f"clips/Y{ytid}.flac",
                "start": f"clips/{ytid}_{start}.wav",
            }[naming]
            write_audio(root / name, seed=number)
        write_csv(
            root / "dataset" / f"{split}.csv", ["audiocap_id", "youtube_id", "start_time", "caption"], rows
        )


@pytest.fixture(scope="module")
def audiocaps(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("audiocaps")
    fake_audiocaps(tmp / "audiocaps", missing="zJpKzqRdBmo")
    out = tmp / "audiocaps.lance"
    err = ran(run_recipe("audiocaps", tmp / "audiocaps", "--out", out, "--workers", "1"))
    assert "AudioCaps: 6 rows (test 2, train 3, val 1); 1 files not found" in err
    assert f"wrote 5 rows to {out}" in err
    return out


def test_audiocaps_command_line_groups_captions_per_clip(audiocaps):
    info = data_info(audiocaps)
    assert info["by_split"] == {
        "test": {"rows": 1, "audio": 1, "text": 1},
        "train": {"rows": 3, "audio": 3, "text": 3},
        "val": {"rows": 1, "audio": 1, "text": 1},
    }
    assert info["captions"] == {"rows": 5, "captions": 3 + 5 + 5, "max_per_row": 5}
    assert info["card"]["name"] == "AudioCaps" and info["card"]["license"].startswith("annotations MIT")
    report = json.loads((audiocaps.parent / "audiocaps.report.json").read_text())
    assert [(r["kind"], r["id"]) for r in report["rejected"]] == [("missing_file", "zJpKzqRdBmo")]
    rows = {r["id"]: r for r in manifest(audiocaps.parent / "audiocaps.manifest.jsonl")}
    assert rows["--0w1YA1Hm4"]["texts"] == [f"--0w1YA1Hm4 test caption {c}" for c in range(5)]
    assert rows["--0w1YA1Hm4"]["audiocap_ids"] == "109,110,111,112,113"
    assert rows["--0w1YA1Hm4"]["start_time"] == 30 and rows["--0w1YA1Hm4"]["split"] == "test"
    assert rows["zJpKzqRdBmo"]["audio"] == "audiocaps/audio/test/zJpKzqRdBmo.wav"  # where the layout puts it


@pytest.mark.parametrize(
    ("naming", "found", "absent"),
    [
        ("Y", "clips/Yb0RFKhbpFJA.flac", "clips/Y7fmOlUlwoNg.flac"),
        ("start", "clips/b0RFKhbpFJA_10.wav", "clips/7fmOlUlwoNg_20.wav"),
    ],
)
def test_audiocaps_finds_flat_clip_namings(tmp_path, naming, found, absent):
    recipe = load_recipe("audiocaps")
    fake_audiocaps(tmp_path / "ac", naming=naming, missing="7fmOlUlwoNg")
    counts = recipe.convert(tmp_path / "ac", tmp_path / "m.jsonl", audio_dir=tmp_path / "ac" / "clips")
    assert counts["rows"] == 6 and counts["missing_files"] == 1
    rows = {r["id"]: r for r in manifest(tmp_path / "m.jsonl")}
    assert rows["b0RFKhbpFJA"]["audio"] == f"ac/{found}"
    assert rows["7fmOlUlwoNg"]["audio"] == f"ac/{absent}"  # listed where the clips found say it belongs


def test_audiocaps_refuses_a_layout_without_its_csvs_or_clips(tmp_path):
    recipe = load_recipe("audiocaps")
    fake_audiocaps(tmp_path / "ac")
    (tmp_path / "ac" / "dataset" / "val.csv").rename(tmp_path / "ac" / "dataset" / "valid.csv")
    with pytest.raises(
        SystemExit,
        match=r"dataset/val.csv not found; expected .* found in .*: test.csv, train.csv, valid.csv$",
    ):
        recipe.convert(tmp_path / "ac", tmp_path / "m.csv")
    (tmp_path / "ac" / "dataset" / "valid.csv").rename(tmp_path / "ac" / "dataset" / "val.csv")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(
        SystemExit, match=r"<youtube_id>.wav not found; expected downloaded clips .* notes.txt"
    ):
        recipe.convert(tmp_path / "ac", tmp_path / "m.csv", audio_dir=tmp_path / "empty")


# --- Clotho ------------------------------------------------------------------------------------------------

CLOTHO = {
    "development": ["Radio Garble.wav", "door creak_2.wav", "rain 01.wav"],
    "validation": ["wind.wav"],
    "evaluation": ["birds at dawn.wav", "train passing.wav"],
}


def fake_clotho(root: Path, missing: str | None = None, stray: bool = False) -> None:
    """Captions and metadata CSVs per split (metadata in ISO-8859-1, as v2.x ships it) and the split folders."""
    seed = 0
    for split, names in CLOTHO.items():
        captions, metadata = [], []
        for name in names:
            seed += 1
            captions.append([name, *(f"{name} heard {c}" for c in range(1, 6))])
            metadata.append(
                [
                    name,
                    "rain;roof",
                    1000 + seed,
                    f"https://freesound.org/s/{1000 + seed}",
                    "[0, 882000]",
                    "José Ñoño",
                    "http://creativecommons.org/licenses/by/3.0/",
                ]
            )
            if name != missing:
                write_audio(root / split / name, seed=seed)
        if stray and split == "evaluation":
            metadata.append(
                ["gone.wav", "", 1, "", "", "x", "http://creativecommons.org/publicdomain/zero/1.0/"]
            )
        write_csv(
            root / f"clotho_captions_{split}.csv",
            ["file_name", *(f"caption_{k}" for k in range(1, 6))],
            captions,
        )
        header = [
            "file_name",
            "keywords",
            "sound_id",
            "sound_link",
            "start_end_samples",
            "manufacturer",
            "license",
        ]
        write_csv(root / f"clotho_metadata_{split}.csv", header, metadata, encoding="iso-8859-1")


@pytest.fixture(scope="module")
def clotho(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("clotho")
    fake_clotho(tmp / "clotho", missing="train passing.wav", stray=True)
    out = tmp / "clotho.lance"
    err = ran(run_recipe("clotho", tmp / "clotho", "--out", out, "--workers", "1"))
    assert (
        "warning: clotho_metadata_evaluation.csv lists 1 file(s) that clotho_captions_evaluation.csv" in err
    )
    assert "Clotho: 6 rows (test 2, train 3, val 1); 1 files not found" in err and "wrote 5 rows" in err
    return out


def test_clotho_command_line_keeps_five_captions_and_licences(clotho):
    info = data_info(clotho)
    assert info["by_split"] == {
        "test": {"rows": 1, "audio": 1, "text": 1},
        "train": {"rows": 3, "audio": 3, "text": 3},
        "val": {"rows": 1, "audio": 1, "text": 1},
    }
    assert info["captions"] == {"rows": 5, "captions": 25, "max_per_row": 5}
    assert "Freesound licence" in info["card"]["license"] and "Tampere" in info["card"]["license"]
    rows = {r["id"]: r for r in manifest(clotho.parent / "clotho.manifest.jsonl")}
    assert rows["Radio Garble"]["manufacturer"] == "José Ñoño"  # ISO-8859-1 read as such
    assert rows["Radio Garble"]["license"] == "http://creativecommons.org/licenses/by/3.0/"
    assert rows["Radio Garble"]["texts"][4] == "Radio Garble.wav heard 5"
    report = json.loads((clotho.parent / "clotho.report.json").read_text())
    assert [(r["kind"], r["id"]) for r in report["rejected"]] == [("missing_file", "train passing")]


def test_clotho_refuses_another_layout(tmp_path):
    recipe = load_recipe("clotho")
    fake_clotho(tmp_path / "c")
    (tmp_path / "c" / "evaluation").rename(tmp_path / "c" / "clotho_audio_evaluation")
    with pytest.raises(
        SystemExit, match=r"c/evaluation not found; expected the Clotho v2.1 layout .*7z here"
    ):
        recipe.convert(tmp_path / "c", tmp_path / "m.csv")
    (tmp_path / "c" / "development" / "rain 01.wav").unlink()
    counts = recipe.convert(tmp_path / "c", tmp_path / "m.jsonl", splits=("development",))
    assert counts["splits"] == {"train": 3} and counts["missing_files"] == 1
    assert manifest(tmp_path / "m.jsonl")[2]["audio"] == "c/development/rain 01.wav"  # listed, not dropped


# --- UrbanSound8K ------------------------------------------------------------------------------------------

US8K = [  # slice_file_name, fsID, start, end, salience, fold, classID, class
    ["100032-3-0-0.wav", 100032, 0.0, 0.317551, 1, 5, 3, "dog_bark"],
    ["100263-2-0-117.wav", 100263, 58.5, 62.5, 1, 5, 2, "children_playing"],
    ["102305-6-0-0.wav", 102305, 0.0, 2.61161, 1, 1, 6, "gun_shot"],
    ["104817-4-0-2.wav", 104817, 1.0, 5.0, 2, 9, 4, "drilling"],
    ["105029-7-2-5.wav", 105029, 42.0, 46.0, 1, 10, 7, "jackhammer"],
    ["106015-5-0-0.wav", 106015, 1.5, 5.5, 2, 10, 5, "engine_idling"],
]


def fake_us8k(root: Path, missing: str | None = None) -> None:
    for k, row in enumerate(US8K):
        if row[0] != missing:
            write_audio(root / "audio" / f"fold{row[5]}" / row[0], seed=k, rate=22_050)
    header = ["slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class"]
    write_csv(root / "metadata" / "UrbanSound8K.csv", header, US8K)


@pytest.fixture(scope="module")
def urbansound8k(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("us8k")
    fake_us8k(tmp / "UrbanSound8K", missing="104817-4-0-2.wav")
    out = tmp / "us8k.lance"
    err = ran(run_recipe("urbansound8k", tmp / "UrbanSound8K", "--out", out, "--workers", "1"))
    assert "UrbanSound8K: 6 rows (test 2, train 3, val 1); 1 files not found" in err and "wrote 5 rows" in err
    return out


def test_urbansound8k_command_line_splits_by_fold(urbansound8k):
    info = data_info(urbansound8k)
    assert info["by_split"] == {
        "test": {"rows": 2, "audio": 2, "text": 2},
        "train": {"rows": 3, "audio": 3, "text": 3},
    }
    assert info["card"]["license"] == "CC BY-NC 3.0" and info["captions"] is None
    rows = {r["id"]: r for r in manifest(urbansound8k.parent / "us8k.manifest.jsonl")}
    assert (
        rows["100032-3-0-0"]["label"] == "dog bark"
        and rows["100032-3-0-0"]["text"] == "the sound of dog bark"
    )
    assert (
        rows["100032-3-0-0"]["fold"] == 5
        and rows["100032-3-0-0"]["audio"] == "UrbanSound8K/audio/fold5/100032-3-0-0.wav"
    )
    assert rows["104817-4-0-2"]["split"] == "val"


def test_urbansound8k_refuses_another_layout(tmp_path):
    recipe = load_recipe("urbansound8k")
    fake_us8k(tmp_path / "u")
    (tmp_path / "u" / "metadata" / "UrbanSound8K.csv").rename(tmp_path / "u" / "metadata" / "us8k.csv")
    with pytest.raises(
        SystemExit, match=r"metadata/UrbanSound8K.csv not found; expected .* found in .*: us8k.csv"
    ):
        recipe.convert(tmp_path / "u", tmp_path / "m.csv")
    with pytest.raises(SystemExit, match="must differ"):
        recipe.convert(tmp_path / "u", tmp_path / "m.csv", val_fold=3, test_fold=3)
    (tmp_path / "u" / "metadata" / "us8k.csv").rename(tmp_path / "u" / "metadata" / "UrbanSound8K.csv")
    (tmp_path / "u" / "audio" / "fold1" / "102305-6-0-0.wav").unlink()
    counts = recipe.convert(tmp_path / "u", tmp_path / "m.jsonl", val_fold=0, test_fold=1)
    assert counts["splits"] == {"test": 1, "train": 5} and counts["missing_files"] == 1


# --- the protocols on the recipes' output ------------------------------------------------------------------


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return save_model(build_model(preset_config("tiny")), tmp_path_factory.mktemp("run") / "step-0000001")


@pytest.mark.parametrize(
    ("protocol", "fixture", "items"),
    [("audiocaps", "audiocaps", 1), ("clotho", "clotho", 1), ("urbansound8k", "urbansound8k", 5)],
)
def test_protocol_runs_on_the_recipe_output(protocol, fixture, items, run_dir, request, capsys):
    data = request.getfixturevalue(fixture)
    args = ["eval", "--run", str(run_dir), "--data", str(data), "--protocol", protocol, "--device", "cpu"]
    try:
        mmpt_main([*args, "--quiet", "--json"])
    except SystemExit as exc:
        assert exc.code == 0, capsys.readouterr().err
    report = json.loads(capsys.readouterr().out)
    assert report["protocol"]["name"] == protocol and report["protocol"]["items"] == items
    if protocol == "urbansound8k":
        assert sorted(report["zero_shot"]["audio"]["fold_accuracy"]) == ["1", "10", "5"]
    else:
        assert report["retrieval"]["text_to_audio"]["n_queries"] == 5


# --- WavCaps -----------------------------------------------------------------------------------------------

DEEP = Path("mnt/fast/nobackup/scratch4weeks/xm00178/WavCaps/data/waveforms")


def fake_wavcaps(root: Path, missing: str | None = None) -> None:
    """json_files per source (each with its own fields), a blacklist, and flac folders as the zips unpack."""
    entries = {
        "AudioSet_SL": [
            {
                "id": "Yb0RFKhbpFJA.wav",
                "caption": "Wind and a man speaking.",
                "audio": "wav_path",
                "duration": 10.0,
            },
            {"id": "Y--0w1YA1Hm4.wav", "caption": "A vehicle passes.", "audio": "wav_path", "duration": 10},
        ],
        "BBC_Sound_Effects": [
            {
                "description": "Cicada close-up.",
                "category": "['Nature']",
                "caption": "A bug is stridulating.",
                "id": "NHU05051026",
                "duration": 88.8,
                "audio": "wav_path",
                "download_link": "https://x/NHU05051026.wav.zip",
            },
        ],
        "FreeSound": [
            {
                "id": "180913",
                "file_name": "UK Mello.wav",
                "href": "/people/T/sounds/180913/",
                "tags": ["ringtone"],
                "description": "Ringtone.",
                "author": "T",
                "duration": 3.2,
                "download_link": "https://x",
                "caption": "A ringtone is playing.",
                "audio": "wav_path",
            },
            {
                "id": "2219",
                "file_name": "b.wav",
                "href": "/x/",
                "tags": [],
                "description": "d",
                "author": "A",
                "duration": 1.5,
                "download_link": "https://y",
                "caption": "A door closes.",
                "audio": "wav_path",
            },
        ],
        "SoundBible": [
            {
                "title": "Airplane Landing",
                "description": "Landing.",
                "author": "D",
                "href": "2219-Airplane.html",
                "caption": "An airplane is landing.",
                "id": "2219",
                "duration": 14.1,
                "audio": "wav_path",
                "download_link": "http://soundbible.com/grab.php?id=2219",
            },
        ],
    }
    names = {
        "AudioSet_SL": "as_final",
        "BBC_Sound_Effects": "bbc_final",
        "FreeSound": "fsd_final",
        "SoundBible": "sb_final",
    }
    seed = 0
    for source, items in entries.items():
        path = root / "json_files" / source / f"{names[source]}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"num_captions_per_audio": 1, "data": items}))
        folder = (
            root / "Zip_files" / source / DEEP / f"{source}_flac"
            if source != "SoundBible"
            else root / "SoundBible_flac"
        )
        folder.mkdir(parents=True, exist_ok=True)
        for item in items:
            seed += 1
            stem = item["id"].removesuffix(".wav")
            if f"{source}/{stem}" != missing:
                write_audio(folder / f"{stem}.flac", seed=seed)
    (root / "json_files" / "blacklist").mkdir()
    (root / "json_files" / "blacklist" / "blacklist_exclude_test_ac.json").write_text(
        json.dumps({"AudioSet": ["Y--0w1YA1Hm4.wav"], "FreeSound": []})
    )


def test_wavcaps_command_line_with_sources_blacklist_and_a_missing_clip(tmp_path):
    fake_wavcaps(tmp_path / "WavCaps", missing="FreeSound/2219")
    out = tmp_path / "wavcaps.lance"
    err = ran(
        run_recipe(
            "wavcaps",
            tmp_path / "WavCaps",
            "--out",
            out,
            "--workers",
            "1",
            "--sources",
            "AudioSet_SL,FreeSound,SoundBible",
            "--exclude",
            "blacklist_exclude_test_ac",
            "--split",
            "train",
        )
    )
    assert "AudioSet_SL: left out 1 clips listed in blacklist_exclude_test_ac" in err
    assert "WavCaps: 4 rows (train 4); 1 files not found" in err and "wrote 3 rows" in err
    info = data_info(out)
    assert info["by_split"] == {"train": {"rows": 3, "audio": 3, "text": 3}}
    assert info["card"]["license"].startswith("academic use only")
    rows = {r["id"]: r for r in manifest(tmp_path / "wavcaps.manifest.jsonl")}
    assert sorted(rows) == [
        "AudioSet_SL/Yb0RFKhbpFJA",
        "FreeSound/180913",
        "FreeSound/2219",
        "SoundBible/2219",
    ]
    assert (
        rows["SoundBible/2219"]["wavcaps_source"] == "SoundBible"
        and rows["SoundBible/2219"]["title"] == "Airplane Landing"
    )
    assert rows["FreeSound/180913"]["tags"] == ["ringtone"] and rows["FreeSound/180913"]["duration"] == 3.2
    assert rows["AudioSet_SL/Yb0RFKhbpFJA"]["audio"].endswith("waveforms/AudioSet_SL_flac/Yb0RFKhbpFJA.flac")
    report = json.loads((tmp_path / "wavcaps.report.json").read_text())
    assert [(r["kind"], r["id"]) for r in report["rejected"]] == [("missing_file", "FreeSound/2219")]


def test_wavcaps_leaves_the_split_to_the_id_and_refuses_another_layout(tmp_path):
    recipe = load_recipe("wavcaps")
    fake_wavcaps(tmp_path / "w", missing="BBC_Sound_Effects/NHU05051026")
    counts = recipe.convert(tmp_path / "w", tmp_path / "m.jsonl")
    assert counts["rows"] == 6 and counts["splits"] == {"auto": 6} and counts["missing_files"] == 1
    assert {r["wavcaps_source"] for r in manifest(tmp_path / "m.jsonl")} == set(recipe.SOURCES)
    with pytest.raises(
        SystemExit, match=r"BBC_Sound_Effects_flac/ \(below .*\) not found; expected the WavCaps layout"
    ):
        recipe.convert(
            tmp_path / "w", tmp_path / "m.csv", audio_dir=tmp_path / "w" / "Zip_files" / "AudioSet_SL"
        )
    (tmp_path / "w" / "json_files" / "FreeSound" / "fsd_final.json").rename(tmp_path / "w" / "fsd.json")
    with pytest.raises(SystemExit, match=r"FreeSound/fsd_final.json not found; expected the WavCaps layout"):
        recipe.convert(tmp_path / "w", tmp_path / "m.csv")


# --- LAION-Audio-630K --------------------------------------------------------------------------------------


def sample(key: str, seed: int, captions: list[str]) -> list[tuple[str, bytes]]:
    """A LAION-style sample: 48 kHz FLAC and its json (caption list, tags, original data)."""
    buf = io.BytesIO()
    sf.write(buf, tone(seed, rate=48_000), 48_000, format="FLAC")
    meta = {"text": captions, "tag": ["rain"], "original_data": {"title": key, "license": "CC0"}}
    return [(f"{key}.flac", buf.getvalue()), (f"{key}.json", json.dumps(meta).encode())]


def fake_laion(root: Path) -> None:
    """Two subsets in LAION's webdataset layout, one flac member corrupt; a third subset not asked for."""
    write_tar(
        root / "BBCSoundEffects" / "train" / "0.tar",
        sample("0", 1, ["rain on a roof", "rain falls"]) + sample("1", 2, ["a bell"]),
    )
    write_tar(
        root / "BBCSoundEffects" / "test" / "0.tar", sample("0", 3, ["wind", "a gust of wind", "wind blows"])
    )
    broken = sample("7", 5, ["a dog barks", "barking"])
    broken[0] = ("7.flac", b"fLaC" + b"\x00" * 40)
    write_tar(root / "audiostock" / "train" / "0.tar", sample("6", 4, ["a car horn", "honking"]) + broken)
    (root / "audiostock" / "train" / "sizes.json").write_text(json.dumps({"0.tar": 2}))
    write_tar(root / "epidemic_sound_effects" / "train" / "0.tar", sample("9", 6, ["music"]))


def test_laion_audio_630k_command_line_with_a_corrupt_member(tmp_path):
    fake_laion(tmp_path / "laion")
    out = tmp_path / "laion.lance"
    err = ran(
        run_recipe(
            "laion_audio_630k",
            tmp_path / "laion",
            "--out",
            out,
            "--workers",
            "1",
            "--subsets",
            "BBCSoundEffects,audiostock",
        )
    )
    assert (
        "LAION-Audio-630K: 5 rows (test 1, train 3)" in err and "wrote 4 rows" in err and "1 rejected" in err
    )
    info = data_info(out)
    assert info["by_split"] == {
        "test": {"rows": 1, "audio": 1, "text": 1},
        "train": {"rows": 3, "audio": 3, "text": 3},
    }
    assert (
        info["captions"]["rows"] == 3 and info["captions"]["captions"] == 2 + 3 + 2
    )  # one-caption rows: text
    assert info["card"]["license"].startswith("research use only")
    report = json.loads((tmp_path / "laion.report.json").read_text())
    assert [(r["kind"], r["id"]) for r in report["rejected"]] == [("corrupt_audio", "audiostock/train/0/7")]


def test_laion_audio_630k_refuses_another_layout(tmp_path):
    recipe = load_recipe("laion_audio_630k")
    fake_laion(tmp_path / "laion")
    with pytest.raises(
        SystemExit, match=r"freesound/train/0.tar not found; expected the LAION-Audio-630K .*: BBC"
    ):
        recipe.convert(tmp_path / "laion", tmp_path / "x.lance", subsets=["freesound"])
    (tmp_path / "flat").mkdir()
    write_tar(tmp_path / "flat" / "0.tar", sample("0", 1, ["x"]))
    with pytest.raises(SystemExit, match=r"<subset>/train/0.tar not found; expected .* found in .*: 0.tar"):
        recipe.convert(tmp_path / "flat", tmp_path / "x.lance")
    shards = recipe.shards_of(tmp_path / "laion")
    assert [s.relative_to(tmp_path / "laion").as_posix() for s in shards] == [
        "BBCSoundEffects/test/0.tar",
        "BBCSoundEffects/train/0.tar",
        "audiostock/train/0.tar",
        "epidemic_sound_effects/train/0.tar",
    ]
