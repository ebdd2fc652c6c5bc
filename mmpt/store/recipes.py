"""What every dataset recipe in `datasets/` shares: the layout checks, the manifest it writes, the ingest it runs.

A recipe turns a corpus's official layout into rows (dicts with `id`, `image` / `audio` / `video` paths, `text`,
`texts`, `label`, `labels`, `split` and metadata); `finish` writes them as a manifest and, when `--out` names a
`.lance` folder, ingests it there and records the dataset card (name, licence, homepage, citation).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
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


def read_csv(path: Path, required: Iterable[str], delimiter: str = ",") -> list[dict[str, str]]:
    """Rows of a metadata CSV/TSV, refusing in one line when a required column is absent."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        names = [n.strip() for n in reader.fieldnames or []]
        missing = [c for c in required if c not in names]
        if missing:
            raise SystemExit(f"error: {path} lacks columns {', '.join(missing)}; found {', '.join(names)}")
        return [{(k or "").strip(): v for k, v in row.items()} for row in reader]


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
    **ingest_kwargs: Any,
) -> dict[str, Any]:
    """Write the manifest, and when `out` is a `.lance` folder ingest it and record the card; return counts.

    `options` are a recipe's parsed arguments (`--overwrite`, `--workers`, ready copies); rows naming a
    file that is absent stay in the manifest so the ingest report lists them as `missing_file`.
    """
    if not rows:
        raise SystemExit("error: the layout lists no items")
    out = Path(out)
    counts = counts_of(rows)
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
    """The recipe's closing line on stderr: rows per split, files not found, rows written."""
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
    print(line, file=sys.stderr)
