"""A Hugging Face `datasets` folder (written by `save_to_disk`) -> mmpt dataset.

Many corpora circulate as Hugging Face datasets. Once one has been downloaded and saved with
`Dataset.save_to_disk` / `DatasetDict.save_to_disk`, this recipe opens it with `datasets.load_from_disk` (no hub
access) and ingests it as it is: Image / Audio features (stored as encoded bytes, or as paths) become the image /
audio blobs, a text column the caption, a ClassLabel column the label by its class names. Needs `datasets`
(`pip install datasets`). The layouts `save_to_disk` writes:

    SAVED/                              a DatasetDict
      dataset_dict.json                 {"splits": ["train", "validation", "test"]}
      train/ data-00000-of-00001.arrow, dataset_info.json, state.json
      validation/ ...
    SAVED/                              or a single Dataset
      data-00000-of-00001.arrow, dataset_info.json, state.json

Columns are found by name (image, audio, text or caption, label, id; texts / captions and labels for lists of
captions / labels) or named with --image-col, --audio-col, --text-col, --label-col, --id-col, --texts-col,
--labels-col. Splits: a DatasetDict's train / training -> train, validation / valid / val / dev -> val,
test / testing -> test; any other split must be mapped with --split-map NAME=train|val|test|skip. A single
Dataset keeps its own `split` column if it has one (else mmpt assigns splits from a hash of the id). Ids: the
id column, else `<split>-<row:06d>` (`row-<row:06d>` for a single Dataset). save_to_disk embeds the bytes of
Image / Audio features; media columns holding path strings are read as written (absolute, or relative to the
working folder), and a path to a file that is absent keeps its row: the ingest report lists it as
`missing_file`. Without a text column, a ClassLabel /
string label gives the caption through --caption (default "the sound of {}" for audio-only data, else
"a photo of {}"). The card: --name, --license, --homepage, else the dataset's own `info` (dataset_name,
license, homepage, citation, description), else the folder name and "not stated". Usage:

    python datasets/hf_disk.py SAVED --out corpus.lance [--text-col sentence] [--license "CC BY 4.0"]
    mmpt data info corpus.lance
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
from collections import Counter
from pathlib import Path
from typing import Any

from mmpt.store.recipes import Card, add_arguments, ingest_into, layout_error, report

CARD = Card(
    name="Hugging Face dataset (save_to_disk)",
    license="not stated",
    homepage="https://huggingface.co/docs/datasets/process#save",
    modalities="image and/or audio, text (from the dataset's features)",
)
LAYOUT = "a folder written by datasets' save_to_disk (dataset_dict.json, or state.json and dataset_info.json)"
SPLIT_NAMES = {
    "train": "train",
    "training": "train",
    "validation": "val",
    "valid": "val",
    "val": "val",
    "dev": "val",
    "test": "test",
    "testing": "test",
}
ROLES = ("id", "text", "image", "audio", "label", "texts", "labels")


def hf_datasets() -> Any:
    """The Hugging Face `datasets` package, imported by name: this folder is also called datasets/, which type
    checkers would take for it (at run time the installed package wins over a folder without __init__.py)."""
    return importlib.import_module("datasets")


def load(root: Path) -> Any:
    """`datasets.load_from_disk(root)` (a Dataset or a DatasetDict); a folder of another shape is one error."""
    if not (root / "dataset_dict.json").is_file() and not (root / "state.json").is_file():
        raise layout_error(root / "dataset_dict.json", root, LAYOUT)
    try:
        datasets = hf_datasets()
    except ImportError:
        raise SystemExit(
            "error: reading a save_to_disk folder needs the datasets package: pip install datasets"
        ) from None
    datasets.disable_progress_bars()
    try:
        return datasets.load_from_disk(str(root))
    except (OSError, ValueError, FileNotFoundError) as exc:
        raise SystemExit(f"error: cannot load {root} with datasets.load_from_disk: {exc}") from None


def parse_split_map(pairs: list[str] | None) -> dict[str, str]:
    """NAME=train|val|test|skip pairs (from --split-map) as a dict; a bad pair is one error."""
    mapping = {}
    for pair in pairs or []:
        name, _, target = pair.partition("=")
        if not name or target not in ("train", "val", "test", "skip"):
            raise SystemExit(f"error: --split-map takes NAME=train|val|test|skip, got {pair!r}")
        mapping[name] = target
    return mapping


def free_name(base: str, names: list[str]) -> str:
    """`base`, or `base_` repeated until it names no column of the dataset."""
    while base in names:
        base += "_"
    return base


def caption_texts(dataset: Any, label_col: str, template: str) -> list[str | None]:
    """One caption per row from its label (ClassLabel ints read as their names)."""
    feature = dataset.features[label_col]
    names = getattr(feature, "names", None)
    captions: list[str | None] = []
    for value in dataset.with_format("arrow")[label_col].to_pylist():
        if names is not None and isinstance(value, int) and 0 <= value < len(names):
            value = names[value]
        captions.append(None if value is None else template.format(str(value).replace("_", " ").strip()))
    return captions


def columns_of(dataset: Any, options: dict[str, str | None]) -> dict[str, str]:
    """role -> column: the named ones (checked), else the default names found in the dataset."""
    names = list(dataset.column_names)
    defaults = {"text": ("text", "caption"), "texts": ("texts", "captions")}
    roles = {}
    for role in ROLES:
        given = options.get(role)
        if given is not None and given not in names:
            raise SystemExit(
                f"error: no column {given!r} for --{role}-col; the dataset has {', '.join(names)}"
            )
        found = given or next((n for n in defaults.get(role, (role,)) if n in names), None)
        if found is not None:
            roles[role] = found
    return roles


def rows_of(
    root: Path,
    columns: dict[str, str | None] | None = None,
    split_map: dict[str, str] | None = None,
    caption: str | None = None,
) -> tuple[Any, dict[str, str]]:
    """The dataset to ingest (every kept split in one Dataset, with split and id columns added where needed)
    and the role -> column names to ingest it with."""
    datasets = hf_datasets()
    loaded = load(root)
    split_map = split_map or {}
    if isinstance(loaded, datasets.DatasetDict):
        parts = []
        for name, part in loaded.items():
            target = split_map.get(name, SPLIT_NAMES.get(name.lower()))
            if target is None:
                raise SystemExit(
                    f"error: split {name!r} of {root} is not train/validation/test; "
                    f"map it with --split-map {name}=train|val|test|skip"
                )
            if target == "skip":
                continue
            roles = columns_of(part, columns or {})
            names = list(part.column_names)
            split_col = free_name("split", names)
            part = part.add_column(split_col, [target] * len(part))
            if "id" not in roles:
                roles["id"] = free_name("id", names)
                part = part.add_column(roles["id"], [f"{name}-{k:06d}" for k in range(len(part))])
            roles["split"] = split_col
            parts.append(part)
        if not parts:
            raise SystemExit(f"error: every split of {root} is skipped by --split-map")
        try:
            dataset = datasets.concatenate_datasets(parts)
        except ValueError as exc:
            raise SystemExit(f"error: the splits of {root} have different features: {exc}") from None
        dataset.info.update(parts[0].info)
    else:
        dataset = loaded
        roles = columns_of(dataset, columns or {})
        if "split" in dataset.column_names:
            roles["split"] = "split"
    if "text" not in roles and "texts" not in roles and "label" in roles:
        media = {m for m in ("image", "audio") if m in roles}
        template = caption or ("the sound of {}" if media == {"audio"} else "a photo of {}")
        roles["text"] = free_name("text", list(dataset.column_names))
        dataset = dataset.add_column(roles["text"], caption_texts(dataset, roles["label"], template))
    if not any(m in roles for m in ("image", "audio", "text", "texts")):
        raise SystemExit(
            f"error: no image, audio or text column in {root}; the dataset has {', '.join(dataset.column_names)}; "
            "name them with --image-col / --audio-col / --text-col"
        )
    return dataset, roles


def card_of(dataset: Any, root: Path, roles: dict[str, str], options: Any = None) -> Card:
    """The card from the options, else the dataset's own info, else the folder name and "not stated"."""
    info = dataset.info
    described = " ".join((info.description or "").split())
    modalities = ", ".join(
        m for m in ("image", "audio", "text") if m in roles or (m == "text" and "texts" in roles)
    )
    return dataclasses.replace(
        CARD,
        name=getattr(options, "name", None) or info.dataset_name or root.name,
        license=getattr(options, "license", None) or info.license or CARD.license,
        homepage=getattr(options, "homepage", None) or info.homepage or "",
        modalities=modalities,
        citation=(info.citation or "").strip(),
        notes=described[:300],
    )


def convert(
    root: Path,
    out: Path,
    columns: dict[str, str | None] | None = None,
    split_map: dict[str, str] | None = None,
    caption: str | None = None,
    options: Any = None,
    quiet: bool = True,
) -> dict[str, Any]:
    """Ingest the save_to_disk folder at `root` into the `.lance` folder `out`; return the counts."""
    dataset, roles = rows_of(root, columns, split_map, caption)
    card = card_of(dataset, root, roles, options)
    warnings = [f"{root} states no licence; pass --license"] if card.license == CARD.license else []
    kwargs = {f"{role}_col": column for role, column in roles.items()}
    table = dataset.with_format("arrow")
    split_col = roles.get("split")
    splits = (
        Counter(str(s) for s in table[split_col].to_pylist()) if split_col else Counter(auto=len(dataset))
    )
    missing = sum(missing_files(dataset, roles[m]) for m in ("image", "audio") if m in roles)
    result = ingest_into(dataset, out, card, options=options, quiet=quiet, **kwargs)
    return {
        "rows": len(dataset),
        "splits": dict(sorted(splits.items())),
        "missing_files": missing,
        "written": result.written,
        "rejected": len(result.rejected),
        "warnings": warnings,
    }


def missing_files(dataset: Any, column: str) -> int:
    """How many values of a media column name a local file that does not exist: a path string, or an
    Image / Audio struct without bytes (read in batches: only the paths leave Arrow)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    missing = 0
    for batch in dataset.select_columns([column]).with_format("arrow").iter(batch_size=8192):
        values = batch.column(column)
        if pa.types.is_struct(values.type):
            if {"bytes", "path"} - {values.type.field(k).name for k in range(values.type.num_fields)}:
                continue
            values = pc.struct_field(values, "path").filter(pc.is_null(pc.struct_field(values, "bytes")))
        elif not pa.types.is_string(values.type) and not pa.types.is_large_string(values.type):
            continue
        paths = [p for p in values.drop_null().to_pylist() if p and "://" not in p]
        missing += sum(1 for p in paths if not Path(p).exists())
    return missing


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Turn a datasets save_to_disk folder into an mmpt dataset.")
    parser.add_argument("root", type=Path, help="the folder written by save_to_disk")
    add_arguments(parser)
    for role in ROLES:
        parser.add_argument(f"--{role}-col", default=None, help=f"the {role} column (default: found by name)")
    parser.add_argument(
        "--split-map",
        action="append",
        metavar="NAME=SPLIT",
        help="a DatasetDict split as train|val|test|skip",
    )
    parser.add_argument(
        "--caption", default=None, help='caption template for label-only rows, e.g. "a photo of {}"'
    )
    parser.add_argument(
        "--name", default=None, help="dataset name for the card (default: the dataset's info)"
    )
    parser.add_argument("--license", default=None, help="licence for the card (default: the dataset's info)")
    parser.add_argument(
        "--homepage", default=None, help="homepage for the card (default: the dataset's info)"
    )
    args = parser.parse_args(argv)
    columns = {role: getattr(args, f"{role}_col") for role in ROLES}
    counts = convert(
        args.root, args.out, columns, parse_split_map(args.split_map), args.caption, options=args, quiet=False
    )
    report(args.name or args.root.name, args.out, counts)


if __name__ == "__main__":
    main()
