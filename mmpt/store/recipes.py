"""What every dataset recipe in `datasets/` shares: the layout checks, the manifest it writes, the ingest it runs.

A recipe turns a corpus's official layout into rows (dicts with `id`, `image` / `audio` / `video` paths, `text`,
`texts`, `label`, `labels`, `split` and metadata); `finish` writes them as a manifest and, when `--out` names a
`.lance` folder, ingests it there and records the dataset card (name, licence, homepage, citation).
What a recipe has to say besides the counts travels in them: `counts["warnings"]` (each printed by `report` as a
`warning: ...` line) and `counts["notes"]` (appended to its closing line); a recipe's `rows_of` takes optional
`warnings` / `notes` lists to append to, and `finish` puts them in the counts.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mmpt.errors import MmptError

MEDIA = ("image", "audio", "video")
MANIFEST_SUFFIXES = (".csv", ".jsonl")


@dataclass(frozen=True)
class Card:
    """A dataset card: what the corpus is and under which licence it may be used."""

    name: str
    license: str
    homepage: str
    modalities: str
    citation: str = ""
    notes: str = ""

    def as_dict(self) -> dict[str, str]:
        return {k: v for k, v in asdict(self).items() if v}


def layout_error(expected: Path | str, root: Path, layout: str) -> SystemExit:
    """One line naming the file or folder expected, what the layout should be, and what was found instead."""
    try:
        found = sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir())
    except OSError:
        found = []
    seen = ", ".join(found[:8]) + (f", ... ({len(found)} entries)" if len(found) > 8 else "")
    where = f"found in {root}: {seen}" if found else f"{root} is empty or missing"
    return SystemExit(f"error: {expected} not found; expected {layout}; {where}")


def require(root: Path, relative: str | Path, layout: str) -> Path:
    """`root / relative` if it exists, else the one-line layout error."""
    path = root / relative
    if not path.exists():
        raise layout_error(path, path.parent if path.parent.exists() else root, layout)
    return path


def read_csv(
    path: Path,
    required: Iterable[str],
    delimiter: str = ",",
    encoding: str = "utf-8-sig",
    fallback: str | None = None,
) -> list[dict[str, str]]:
    """Rows of a metadata CSV/TSV, refusing in one line when a required column is absent.

    Text that is not `encoding` is read as `fallback` when one is given (Clotho's ISO-8859-1 metadata), else
    refused in one line."""
    data = path.read_bytes()
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        if fallback is None:
            raise SystemExit(
                f"error: {path} is not {encoding} text (byte {exc.start}: {exc.reason})"
            ) from None
        text = data.decode(fallback)
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    names = [n.strip() for n in reader.fieldnames or []]
    missing = [c for c in required if c not in names]
    if missing:
        raise SystemExit(f"error: {path} lacks columns {', '.join(missing)}; found {', '.join(names)}")
    return [{(k or "").strip(): v for k, v in row.items()} for row in reader]


def read_json(path: Path, *lists: str, kind: str = "in the expected format") -> dict[str, Any]:
    """`path` parsed, refusing in one line a file that is not JSON or lacks one of the top-level lists named."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SystemExit(f"error: cannot read {path}: {exc}") from None
    missing = [k for k in lists if not isinstance(data, dict) or not isinstance(data.get(k), list)]
    if missing:
        raise SystemExit(f'error: {path} is not {kind}: no top-level "{missing[0]}" list')
    return data


# Karpathy's split files (dataset_coco.json, dataset_flickr30k.json): restval is the rest of val, used to train.
KARPATHY_SPLITS = {"train": "train", "restval": "train", "val": "val", "test": "test"}


def read_karpathy(path: Path, *fields: str) -> list[dict[str, Any]]:
    """The images of a Karpathy split file, each checked for a known `split` and the `fields` a recipe reads."""
    images: list[dict[str, Any]] = read_json(path, "images", kind="a Karpathy split file")["images"]
    for image in images:
        if (
            not isinstance(image, dict)
            or image.get("split") not in KARPATHY_SPLITS
            or any(f not in image for f in fields)
        ):
            wanted = "".join(f', "{f}"' for f in fields)
            raise SystemExit(f'error: {path} has an image without "split"{wanted}: {str(image)[:80]}')
    return images


def fold_split(fold: int, val_fold: int, test_fold: int) -> str:
    """train / val / test for one fold of a corpus shipped in folds (ESC-50, UrbanSound8K)."""
    if fold == test_fold:
        return "test"
    if fold == val_fold:
        return "val"
    return "train"


def comma_list(text: str | None) -> list[str]:
    """The names of a comma-separated option ("a, b,,c" -> ["a", "b", "c"]); none for None or blanks."""
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def media_index(folder: Path, exts: Sequence[str], recursive: bool = True) -> dict[str, list[Path]]:
    """Every file in `folder` (and its sub-folders when `recursive`) ending in one of `exts` (lower case), by
    file stem, each stem's files in sorted order; empty when the folder is absent."""
    index: dict[str, list[Path]] = {}
    if folder.is_dir():
        for path in sorted(folder.rglob("*") if recursive else folder.iterdir()):
            if path.suffix.lower() in exts and path.is_file():
                index.setdefault(path.stem, []).append(path)
    return index


def unique_ids(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows whose repeated ids get `#1`, `#2`, ... (in file order), so a repeated line is not refused."""
    seen: Counter[str] = Counter()
    for row in rows:
        n = seen[row["id"]]
        seen[row["id"]] += 1
        if n:
            row["id"] = f"{row['id']}#{n}"
    return rows


def class_caption(label: str, template: str = "the sound of {}") -> str:
    """A caption for a class-only corpus: "chirping_birds" -> "the sound of chirping birds"."""
    return template.format(label.replace("_", " ").strip())


def _cell(key: str, value: Any, base: Path) -> Any:
    if key in MEDIA and value is not None:
        text = str(value)
        if "://" in text:
            return text
        return Path(os.path.relpath(Path(text).resolve(), base.resolve())).as_posix()
    if isinstance(value, Path):
        return value.as_posix()
    return value


def write_manifest(rows: Iterable[Mapping[str, Any]], path: Path) -> list[dict[str, Any]]:
    """Write rows as JSON lines (lists kept) or CSV (lists as JSON text), media paths relative to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.parent
    cells = [{k: _cell(k, v, base) for k, v in row.items()} for row in rows]
    if path.suffix == ".jsonl":
        _type_numbers(cells)
        with path.open("w", encoding="utf-8") as handle:
            for row in cells:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        return cells
    columns = list(dict.fromkeys(k for row in cells for k in row))
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for row in cells:
            writer.writerow(
                [
                    json.dumps(v, ensure_ascii=False) if isinstance(v, list) else ("" if v is None else v)
                    for v in (row.get(c) for c in columns)
                ]
            )
    return cells


ROLES = frozenset({"id", "text", "texts", "label", "labels", "split", "start", "end", *MEDIA})


def _type_numbers(cells: list[dict[str, Any]]) -> None:
    """Metadata read from CSV/TXT files as text becomes numbers where a whole column is numeric, as a CSV
    manifest's column would be typed at ingest (ESC-50's `fold`: 1..5, not "1".."5"); ids and labels stay text."""
    columns = {k for row in cells for k in row} - ROLES
    for column in columns:
        values = [row[column] for row in cells if isinstance(row.get(column), str) and row[column] != ""]
        if not values or any(not isinstance(row.get(column, ""), str) for row in cells):
            continue
        for kind in (int, float):
            try:
                typed = {v: kind(v) for v in values}
            except ValueError:
                continue
            for row in cells:
                value = row.get(column)
                row[column] = typed[value] if value else None
            break


def counts_of(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Rows per split and per modality of a manifest (what `mmpt data info` should show after the ingest)."""
    splits = Counter(str(r.get("split") or "auto") for r in rows)
    modalities = Counter(
        m
        for r in rows
        for m in ("image", "audio", "video", "text")
        if r.get(m) or (m == "text" and r.get("texts"))
    )
    return {"rows": len(rows), "splits": dict(sorted(splits.items())), "modalities": dict(modalities)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every recipe takes besides its own: the output and the ingest's knobs."""
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        help="a .lance folder to ingest into (its manifest is kept beside it), or a manifest .csv / .jsonl",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing .lance output")
    parser.add_argument("--workers", type=int, default=None, help="ingest decode workers (default: cores)")
    parser.add_argument("--image-max-side", type=int, default=None, help="also store training-ready images")
    parser.add_argument("--audio-rate", type=int, default=None, help="also store training-ready audio")


def manifest_path_for(out: Path) -> Path:
    """Where the manifest of a `.lance` output goes: `corpus.lance` -> `corpus.manifest.jsonl` beside it."""
    return out.with_name(out.name[: -len(".lance")] + ".manifest.jsonl")


def finish(
    rows: list[dict[str, Any]],
    out: Path,
    card: Card,
    *,
    options: argparse.Namespace | None = None,
    quiet: bool = False,
    notes: list[str] | None = None,
    warnings: list[str] | None = None,
    **ingest_kwargs: Any,
) -> dict[str, Any]:
    """Write the manifest, and when `out` is a `.lance` folder ingest it and record the card; return counts.

    `options` are a recipe's parsed arguments (`--overwrite`, `--workers`, ready copies); rows naming a
    file that is absent stay in the manifest so the ingest report lists them as `missing_file`. `notes` and
    `warnings` (what the recipe noticed in the layout) are kept in the counts for `report`.
    """
    if not rows:
        raise SystemExit("error: the layout lists no items")
    out = Path(out)
    counts = counts_of(rows)
    if notes is not None:
        counts["notes"] = notes
    if warnings is not None:
        counts["warnings"] = warnings
    counts["missing_files"] = sum(
        1 for r in rows for m in MEDIA if r.get(m) and "://" not in str(r[m]) and not Path(r[m]).exists()
    )
    if out.suffix in MANIFEST_SUFFIXES:
        write_manifest(rows, out)
        counts["manifest"] = str(out)
        return counts
    if out.suffix != ".lance":
        raise SystemExit(f"error: --out {out} must end in .lance (a dataset) or .csv / .jsonl (a manifest)")
    manifest = manifest_path_for(out)
    write_manifest(rows, manifest)
    result = ingest_into(manifest, out, card, options=options, quiet=quiet, **ingest_kwargs)
    counts.update(manifest=str(manifest), written=result.written, rejected=len(result.rejected))
    return counts


def ingest_into(
    source: Any,
    out: Path,
    card: Card,
    *,
    options: argparse.Namespace | None = None,
    quiet: bool = False,
    **ingest_kwargs: Any,
) -> Any:
    """`mmpt.ingest(source, out)` with a recipe's options, then the card recorded; the IngestResult.

    For recipes whose source ingests as it is (webdataset shards, a `datasets.load_from_disk` folder).
    """
    from mmpt.store.dataset import open_dataset
    from mmpt.store.ingest import ingest

    if str(out).endswith(MANIFEST_SUFFIXES) or not str(out).endswith(".lance"):
        raise SystemExit(f"error: --out {out} must be a .lance folder for this recipe")
    if options is not None:
        ingest_kwargs.setdefault("overwrite", options.overwrite)
        ingest_kwargs.setdefault("workers", options.workers)
        ingest_kwargs.setdefault("image_max_side", options.image_max_side)
        ingest_kwargs.setdefault("audio_rate", options.audio_rate)
    try:
        result = ingest(source, out, quiet=quiet, **ingest_kwargs)
        open_dataset(out).set_card(card.as_dict())
    except MmptError as exc:  # a recipe is a script: one line, not a traceback
        raise SystemExit(f"error: {exc}") from None
    return result


def report(name: str, out: Path, counts: Mapping[str, Any]) -> None:
    """The recipe's closing line on stderr (rows per split, files not found, rows written, then its notes), after
    a `warning: ...` line for each of its warnings."""
    for warning in counts.get("warnings", []):
        print(f"warning: {warning}", file=sys.stderr)
    splits = ", ".join(f"{k} {v}" for k, v in counts["splits"].items())
    line = f"{name}: {counts['rows']} rows ({splits})"
    if counts.get("missing_files"):
        line += f"; {counts['missing_files']} files not found (listed in the ingest report)"
    if "written" in counts:
        line += f"; wrote {counts['written']} rows to {out}"
        if counts.get("rejected"):
            line += f", {counts['rejected']} rejected (see the ingest report)"
    else:
        line += f"; manifest {out}"
    line += "".join(f"; {note}" for note in counts.get("notes", []))
    print(line, file=sys.stderr)
