"""WavCaps -> mmpt dataset.

WavCaps (Mei et al. 2023; https://huggingface.co/datasets/cvssp/WavCaps, arXiv:2303.17395) is 403,050 audio clips
with one ChatGPT-rewritten caption each, from four sources: FreeSound 262,300, BBC Sound Effects 31,201, SoundBible
1,232 and the AudioSet strongly-labelled subset 108,317 (10 s clips, PANNs naming `Y<youtube_id>`). It has no
splits: it is a pretraining corpus (evaluate on AudioCaps / Clotho, which it overlaps: see --exclude). The official
layout (the Hub repository, with each source's Zip_files archive unzipped where it is):

    WavCaps/
      json_files/AudioSet_SL/as_final.json         {"data": [{"id": "Yb0RFKhbpFJA.wav", "caption", "audio", "duration"}]}
      json_files/BBC_Sound_Effects/bbc_final.json  {"data": [{"id", "caption", "description", "category",
                                                              "duration", "audio", "download_link"}]}
      json_files/FreeSound/fsd_final.json          {"data": [{"id", "file_name", "href", "tags", "description",
                                                              "author", "duration", "download_link", "caption", "audio"}]}
      json_files/SoundBible/sb_final.json          {"data": [{"id", "title", "description", "author", "href",
                                                              "caption", "duration", "audio", "download_link"}]}
      json_files/blacklist/blacklist_exclude_all_ac.json, blacklist_exclude_test_ac.json,
                           blacklist_exclude_ub8k_esc50_vggsound.json     {"AudioSet": [ids], "FreeSound": [ids]}
      Zip_files/<source>/<source>.zip (+ .z01 ...)  unzipped: .../waveforms/<source>_flac/<id>.flac

The recipe finds each source's `<source>_flac/` folder anywhere below the root (or `--audio-dir`): the archives
unzip to a deep `mnt/.../waveforms/<source>_flac/` path, and moved folders (`WavCaps/AudioSet_SL_flac/`) work too.
A clip's file is `<id>.flac` (AudioSet: the id's `.wav` replaced by `.flac`). Rows: id `<source>/<id stem>` (the
sources' numeric ids overlap), audio, text (the caption), no split (mmpt hashes the id 80/10/10; `--split train`
puts every row in one split), and source, duration, description, author, title, category, tags, file_name, href,
download_link as metadata (the source in `wavcaps_source`: `source` is the dataset's own column). A clip listed but
not found stays a row (`missing_file`). Usage:

    python datasets/wavcaps.py WavCaps --out wavcaps.lance [--sources FreeSound,SoundBible]
        [--exclude blacklist_exclude_all_ac,blacklist_exclude_ub8k_esc50_vggsound] [--split train]
    mmpt data info wavcaps.lance

The blacklists name the AudioSet and FreeSound clips that overlap evaluation benchmarks (AudioCaps in
blacklist_exclude_all_ac / _test_ac; UrbanSound8K, ESC-50, VGGSound in blacklist_exclude_ub8k_esc50_vggsound):
leave them out when a model pretrained on WavCaps is to be evaluated on those benchmarks.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from mmpt.store.recipes import Card, add_arguments, comma_list, finish, layout_error, report, require

CARD = Card(
    name="WavCaps",
    license="academic use only (WavCaps terms; the Hub lists CC BY 4.0 for the captions); audio under each "
    "source's terms: FreeSound per-clip Creative Commons licences, BBC Sound Effects RemArc licence "
    "(non-commercial), SoundBible per-clip licences, AudioSet SL: YouTube terms",
    homepage="https://huggingface.co/datasets/cvssp/WavCaps",
    modalities="audio, text (1 generated caption per clip)",
    citation="Mei et al., WavCaps: A ChatGPT-Assisted Weakly-Labelled Audio Captioning Dataset for Audio-Language "
    "Multimodal Research, arXiv:2303.17395 (IEEE/ACM TASLP 2024)",
    notes="403,050 clips (FreeSound 262,300, BBC 31,201, SoundBible 1,232, AudioSet SL 108,317), no splits",
)
SOURCES = {
    "AudioSet_SL": "as_final.json",
    "BBC_Sound_Effects": "bbc_final.json",
    "FreeSound": "fsd_final.json",
    "SoundBible": "sb_final.json",
}
BLACKLIST_KEYS = {"AudioSet": "AudioSet_SL", "FreeSound": "FreeSound"}  # blacklist key -> source
METADATA = (
    "duration",
    "description",
    "author",
    "title",
    "category",
    "tags",
    "file_name",
    "href",
    "download_link",
)
LAYOUT = (
    "the WavCaps layout (json_files/<source>/{as,bbc,fsd,sb}_final.json, audio unzipped to <source>_flac/)"
)


def stem_of(clip_id: Any) -> str:
    """A WavCaps id as its file stem: "Yb0RFKhbpFJA.wav" -> "Yb0RFKhbpFJA", 180913 -> "180913"."""
    text = str(clip_id).strip()
    return text[: -len(".wav")] if text.lower().endswith(".wav") else text


def seconds(value: Any) -> float | None:
    """A json duration as a float (a few entries give it as text); None when it is not a number."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def find_audio_dirs(base: Path, sources: list[str]) -> dict[str, Path]:
    """Each source's `<source>_flac` folder, the first found walking `base` (not descending into them)."""
    wanted = {f"{s}_flac": s for s in sources}
    found: dict[str, Path] = {}
    for folder, subdirs, _files in os.walk(base):
        for name in list(subdirs):
            if name in wanted:
                found.setdefault(wanted[name], Path(folder) / name)
                subdirs.remove(name)
        subdirs[:] = [d for d in subdirs if d != "json_files"]
        if len(found) == len(wanted):
            break
    return found


def read_source(path: Path) -> list[dict[str, Any]]:
    """The `data` list of one source's json file, refusing in one line anything else."""
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))["data"]
    except (ValueError, KeyError, TypeError) as exc:
        raise SystemExit(f'error: {path} is not a WavCaps json file ({{"data": [...]}}): {exc}') from None
    if not isinstance(entries, list) or not all(isinstance(e, dict) and "id" in e for e in entries):
        raise SystemExit(f"error: {path}: `data` is not a list of entries with an `id`")
    return entries


def read_blacklists(root: Path, names: list[str]) -> dict[str, set[str]]:
    """source -> file stems listed in the named json_files/blacklist/<name>.json files."""
    excluded: dict[str, set[str]] = {}
    for name in names:
        path = require(root, Path("json_files") / "blacklist" / f"{name.removesuffix('.json')}.json", LAYOUT)
        listed = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(listed, dict):
            raise SystemExit(f'error: {path} is not a WavCaps blacklist ({{"AudioSet": [...], ...}})')
        for key, ids in listed.items():
            source = BLACKLIST_KEYS.get(str(key), str(key))
            excluded.setdefault(source, set()).update(stem_of(i) for i in ids)
    return excluded


def rows_of(
    root: Path,
    sources: list[str] | None = None,
    audio_dir: Path | None = None,
    exclude: list[str] | None = None,
    split: str | None = None,
    notes: list[str] | None = None,
) -> list[dict[str, Any]]:
    """One row per entry of the chosen sources' json files; entries on a chosen blacklist are left out."""
    sources = list(sources or SOURCES)
    unknown = [s for s in sources if s not in SOURCES]
    if unknown:
        raise SystemExit(f"error: unknown WavCaps source {unknown[0]!r}; choose from {', '.join(SOURCES)}")
    jsons = {s: require(root, Path("json_files") / s / SOURCES[s], LAYOUT) for s in sources}
    excluded = read_blacklists(root, exclude or [])
    base = audio_dir if audio_dir is not None else root
    folders = find_audio_dirs(base, sources)
    absent = [s for s in sources if s not in folders]
    if absent:
        raise layout_error(f"{absent[0]}_flac/ (below {base})", base, LAYOUT + "; or pick --sources")
    rows = []
    for source in sources:
        skipped = 0
        for entry in read_source(jsons[source]):
            stem = stem_of(entry["id"])
            if stem in excluded.get(source, ()):
                skipped += 1
                continue
            meta: dict[str, Any] = {k: entry.get(k) for k in METADATA if entry.get(k) not in (None, "")}
            if "duration" in meta:
                meta["duration"] = seconds(meta["duration"])
            rows.append(
                {
                    "id": f"{source}/{stem}",
                    "audio": folders[source] / f"{stem}.flac",
                    "text": entry.get("caption"),
                    "split": split,
                    "wavcaps_source": source,
                    **meta,
                }
            )
        if skipped and notes is not None:
            notes.append(f"{source}: left out {skipped} clips listed in {', '.join(exclude or [])}")
    return rows


def convert(
    root: Path,
    out: Path,
    sources: list[str] | None = None,
    audio_dir: Path | None = None,
    exclude: list[str] | None = None,
    split: str | None = None,
    options: Any = None,
    quiet: bool = True,
) -> dict[str, Any]:
    """Write the WavCaps folder at `root` to `out` (.lance dataset or manifest); return the counts and notes."""
    notes: list[str] = []
    rows = rows_of(root, sources, audio_dir, exclude, split, notes)
    return finish(rows, out, CARD, options=options, quiet=quiet, notes=notes)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Turn the WavCaps layout (json files + unzipped flac) into an mmpt dataset."
    )
    parser.add_argument("root", type=Path, help="the WavCaps folder (holding json_files/)")
    add_arguments(parser)
    parser.add_argument(
        "--sources", default=None, help=f"comma-separated sources (default: all of {', '.join(SOURCES)})"
    )
    parser.add_argument(
        "--audio-dir", type=Path, default=None, help="where the <source>_flac folders are (default: ROOT)"
    )
    parser.add_argument(
        "--exclude",
        default=None,
        help="comma-separated json_files/blacklist names whose clips to leave out (e.g. blacklist_exclude_all_ac)",
    )
    parser.add_argument(
        "--split",
        choices=("train", "val", "test"),
        default=None,
        help="put every row in this split (default: by id)",
    )
    args = parser.parse_args(argv)
    counts = convert(
        args.root,
        args.out,
        comma_list(args.sources),
        args.audio_dir,
        comma_list(args.exclude),
        args.split,
        options=args,
        quiet=False,
    )
    report("WavCaps", args.out, counts)


if __name__ == "__main__":
    main()
