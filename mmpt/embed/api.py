"""The Python API of a trained run: embed raw inputs, write a run's embedding columns, search with a query.

`load_model(run)` gives an `Encoder` (text, images, audio -> unit vectors); `embed_run` writes
`emb_<name>_<modality>` columns into the dataset, resumably; `search_run` / `search_text` embed a query
and return the nearest rows. Column names use the run's *name*: the run directory's name, sanitised to
letters, digits, `_` and `-` (see `run_name`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from mmpt.embed.columns import as_lance, check_run_name, read_embeddings, sql_literal
from mmpt.errors import ConfigError, DataError
from mmpt.store.schema import ID, MODALITIES, embedding_column

if TYPE_CHECKING:
    import lance
    from PIL import Image

    from mmpt.data.transforms import ImageTransform
    from mmpt.models.model import MultimodalModel
    from mmpt.models.tokenizer import Tokenizer
    from mmpt.store.dataset import MmptDataset

log = logging.getLogger(__name__)

ImageInput = Any  # PIL.Image.Image | str | Path | bytes
AudioInput = Any  # np.ndarray | torch.Tensor | str | Path | bytes


# -- run names and checkpoints -----------------------------------------------------------------------


def run_name(run: str | Path, name: str | None = None) -> str:
    """The name a run's columns carry: `name` if given, else the run folder's name sanitised.

    A checkpoint folder `RUN/checkpoints/step-0000030` is named `<RUN name>-step-0000030`.
    """
    if name is not None:
        return check_run_name(name)
    path = Path(run).resolve()
    base = path.name
    if path.parent.name == "checkpoints" and (path / "model.safetensors").is_file():
        base = f"{path.parent.parent.name}-{path.name}"
    clean = re.sub(r"[^A-Za-z0-9_-]+", "_", base).lstrip("_-")
    if not clean:
        raise ConfigError(f"cannot derive a column name from {str(run)!r}; pass a name (--name)")
    return clean


def _as_name(run: str | Path) -> str:
    """A run folder (existing path) becomes its derived name; anything else must already be a valid name."""
    return run_name(run) if Path(run).exists() else check_run_name(str(run))


def checkpoint_dir(run_or_checkpoint: str | Path) -> Path:
    """The checkpoint folder holding the weights: the folder itself, or a run's latest checkpoint."""
    from mmpt.runs import RunDir

    path = Path(run_or_checkpoint)
    if (path / "model.safetensors").is_file():
        return path
    if not path.exists():
        raise ConfigError(f"run not found: {path}")
    ckpt = RunDir.open(path).latest_checkpoint()
    if ckpt is None:
        raise ConfigError(f"{path} has no checkpoint yet")
    return ckpt


def model_modalities(run_or_checkpoint: str | Path) -> tuple[str, ...]:
    """The modalities a run's model embeds, read from its config without loading the weights."""
    from mmpt.models.checkpoint import load_config

    return tuple(load_config(checkpoint_dir(run_or_checkpoint)).modalities)


def _require(modality: str, has: Sequence[str], who: str) -> None:
    if modality not in MODALITIES:
        raise ConfigError(f"unknown modality {modality!r}; choose from {', '.join(MODALITIES)}")
    if modality not in has:
        raise ConfigError(f"{who} has no {modality} tower; it embeds {', '.join(has)}")


# -- the encoder -------------------------------------------------------------------------------------


class Encoder:
    """A run's model ready for inference on raw inputs: texts, images (PIL or files), audio (arrays or files).

    Every `embed_*` returns L2-normalised float32 [N, D], computed in batches without gradients
    (bf16 autocast on CUDA). Inputs go through the same eval transforms as the dataset loader.
    """

    def __init__(
        self,
        model: MultimodalModel,
        device: str | torch.device = "auto",
        *,
        batch_size: int = 64,
        source: str = "model",
    ) -> None:
        from mmpt.embed.compute import pick_device

        self.device = device if isinstance(device, torch.device) else pick_device(device)
        self.model = model.eval().to(self.device)
        self.spec = model.spec
        self.modalities: tuple[str, ...] = tuple(model.modalities)
        self.dim = int(model.config.embed_dim)
        self.batch_size = batch_size
        self.source = source
        self._tokenizer: Tokenizer | None = None
        self._transform: ImageTransform | None = None

    def __repr__(self) -> str:
        return f"Encoder({self.source!r}, modalities={self.modalities}, dim={self.dim}, device={self.device})"

    def _encode(
        self, modality: str, items: Sequence[Any], prepare: Callable[[list[Any]], torch.Tensor]
    ) -> np.ndarray:
        _require(modality, self.modalities, f"model {self.source}")
        out = []
        for start in range(0, len(items), self.batch_size):
            x = prepare(list(items[start : start + self.batch_size])).to(self.device)
            with (
                torch.no_grad(),
                torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"),
            ):
                features = self.model.encode(modality, x)
            out.append(F.normalize(features.float(), dim=-1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> [N, D] with the model's tokenizer."""
        if isinstance(texts, str):
            raise DataError("embed_text takes a list of strings, not one string")
        _require("text", self.modalities, f"model {self.source}")
        if self._tokenizer is None:
            from mmpt.models.tokenizer import build_tokenizer

            self._tokenizer = build_tokenizer(self.spec)
        tokenize = self._tokenizer
        return self._encode("text", texts, lambda batch: tokenize([str(t) for t in batch]).long())

    def embed_images(self, images: Sequence[ImageInput]) -> np.ndarray:
        """PIL images, image file paths or encoded bytes -> [N, D] (RGB, eval resize + centre crop)."""
        if isinstance(images, str | Path | bytes) or hasattr(images, "getpixel"):
            raise DataError("embed_images takes a list of images, not one image")
        _require("image", self.modalities, f"model {self.source}")
        if self._transform is None:
            from mmpt.data.transforms import build_image_transform

            self._transform = build_image_transform(self.spec)
        transform = self._transform
        return self._encode("image", images, lambda batch: torch.stack([transform(_image(i)) for i in batch]))

    def embed_audio(self, clips: Sequence[AudioInput], sample_rate: int | None = None) -> np.ndarray:
        """Waveforms (at the model's rate unless `sample_rate` is given), audio files or bytes -> [N, D].

        Multi-channel arrays are averaged to mono (the shorter axis is taken as channels); clips are
        centre-cropped or repeat-padded to the model's clip length, as in the dataset loader.
        """
        from mmpt.data.audio import fit_length

        if isinstance(clips, str | Path | bytes) or (getattr(clips, "ndim", 2) == 1):
            raise DataError("embed_audio takes a list of clips, not one clip")

        def prepare(batch: list[Any]) -> torch.Tensor:
            waves = [_wave(c, sample_rate, self.spec.sample_rate) for c in batch]
            return torch.stack([fit_length(w, self.spec.clip_samples) for w in waves])

        return self._encode("audio", clips, prepare)


def _image(item: ImageInput) -> Image.Image:
    """One image input as an RGB PIL image."""
    from PIL import Image

    from mmpt.data.transforms import decode_image

    if isinstance(item, Image.Image):
        return item.convert("RGB")
    if isinstance(item, bytes | bytearray):
        return decode_image(bytes(item))
    if isinstance(item, str | Path):
        path = Path(item)
        if not path.is_file():
            raise DataError(f"image file not found: {path}")
        try:
            return decode_image(path.read_bytes())
        except Exception as exc:
            raise DataError(f"cannot decode image {path}: {exc}") from exc
    raise DataError(f"expected a PIL image, a path or bytes, got {type(item).__name__}")


def _wave(item: AudioInput, sample_rate: int | None, target: int) -> torch.Tensor:
    """One audio input as a mono float32 waveform at `target` Hz."""
    from torchaudio.functional import resample

    from mmpt.data.audio import decode_audio

    if isinstance(item, str | Path | bytes | bytearray):
        data = item if isinstance(item, bytes | bytearray) else _read_file(Path(item))
        try:
            return decode_audio(bytes(data), target)
        except Exception as exc:
            raise DataError(
                f"cannot decode audio {item if not isinstance(item, bytes) else '(bytes)'}: {exc}"
            ) from exc
    wave = torch.as_tensor(np.asarray(item, dtype=np.float32) if not torch.is_tensor(item) else item).float()
    if wave.ndim == 2:
        wave = wave.mean(dim=int(np.argmin(wave.shape)))
    if wave.ndim != 1 or wave.numel() == 0:
        raise DataError(f"expected a mono or multi-channel waveform, got shape {tuple(wave.shape)}")
    if sample_rate is not None and int(sample_rate) != target:
        wave = resample(wave, int(sample_rate), int(target))
    return wave


def _read_file(path: Path) -> bytes:
    if not path.is_file():
        raise DataError(f"audio file not found: {path}")
    return path.read_bytes()


_encoders: dict[tuple[str, float, str], Encoder] = {}


def load_model(run_or_checkpoint: str | Path, device: str = "auto", *, batch_size: int = 64) -> Encoder:
    """The `Encoder` of a run's latest checkpoint (or of a checkpoint folder); reused while the weights are unchanged."""
    from mmpt.embed.compute import pick_device
    from mmpt.models.checkpoint import load_model as load_checkpoint

    ckpt = checkpoint_dir(run_or_checkpoint)
    dev = pick_device(device)
    key = (str(ckpt.resolve()), (ckpt / "model.safetensors").stat().st_mtime, str(dev))
    if key not in _encoders:
        _encoders.clear()  # keep one model in memory
        _encoders[key] = Encoder(load_checkpoint(ckpt), dev, source=str(run_or_checkpoint))
    encoder = _encoders[key]
    encoder.batch_size = batch_size
    return encoder


def embeddings(
    dataset: Any, run: str | Path, modality: str, format: str = "numpy", split: str | None = None
) -> tuple[Any, Any]:
    """(ids, vectors) a run wrote for one modality: numpy [N, D], torch, or Arrow (see `read_embeddings`).

    `run` is a run folder (its derived name is used) or a run name.
    """
    return read_embeddings(dataset, _as_name(run), modality, format=format, split=split)


# -- embedding a dataset -----------------------------------------------------------------------------


def _open(data: Any) -> MmptDataset:
    """An MmptDataset from a path/URI, an MmptDataset or a LanceDataset."""
    from mmpt.store.dataset import MmptDataset, open_dataset

    if isinstance(data, MmptDataset):
        return data
    return open_dataset(data if isinstance(data, str | Path) else as_lance(data).uri)


def _uri(data: Any) -> str:
    """The Lance URI of a dataset given as a path, an MmptDataset or a LanceDataset (checked to exist)."""
    return _open(data).lance.uri


def _wanted(
    model_has: Sequence[str], data_has: set[str], modalities: Sequence[str] | None, who: str
) -> list[str]:
    """The modalities to embed: those asked for (each checked), or all the model and the dataset both have."""
    if modalities:
        for m in modalities:
            _require(m, model_has, who)
            if m not in data_has:
                raise DataError(f"the dataset has no {m} values; it holds {', '.join(sorted(data_has))}")
        return list(dict.fromkeys(modalities))
    wanted = [m for m in model_has if m in data_has]
    if not wanted:
        raise DataError(
            f"{who} embeds {', '.join(model_has)} but the dataset holds {', '.join(sorted(data_has))}"
        )
    return wanted


def _plan(
    lds: lance.LanceDataset, split: str | None, done: dict[str, set[str]]
) -> tuple[dict[str, int], list[tuple[tuple[str, ...], np.ndarray]]]:
    """Rows of `split` still to embed: the count per modality, and the row positions grouped by the
    modalities not yet done for them, so that each row is decoded once for all of its pending modalities
    (a row lacking a modality costs nothing there: the loader marks it missing without decoding)."""
    from mmpt.data.sampler import split_positions

    positions = split_positions(lds, split)
    ids = lds.to_table(columns=[ID])[ID]
    counts, keys = {}, np.zeros(len(positions), np.int64)
    needed = np.zeros(len(positions), bool)
    for bit, (m, done_ids) in enumerate(done.items()):
        present = pc.is_in(ids, value_set=lds.to_table(columns=[ID], filter=f"`{m}` IS NOT NULL")[ID])
        finished = pc.is_in(ids, value_set=pa.array(list(done_ids), pa.string()))
        todo_all = ~finished.to_numpy(zero_copy_only=False)
        pending = (present.to_numpy(zero_copy_only=False) & todo_all)[positions]
        counts[m] = int(pending.sum())
        needed |= pending
        keys |= todo_all[positions].astype(np.int64) << bit
    names = list(done)
    groups = []
    for key in np.unique(keys[needed]):
        rows = positions[needed & (keys == key)]
        groups.append((tuple(m for bit, m in enumerate(names) if key >> bit & 1), rows))
    return counts, sorted(groups, key=lambda g: int(g[1][0]))


def embed_run(
    run: str | Path,
    data: Any,
    modalities: Sequence[str] | None = None,
    split: str | None = None,
    *,
    batch_size: int = 256,
    device: str = "auto",
    num_workers: int = 0,
    chunk_rows: int = 2048,
    name: str | None = None,
    progress: bool = True,
    encoder: Encoder | None = None,
) -> dict[str, int]:
    """Write a run's embeddings into `emb_<name>_<modality>` columns of the dataset; returns rows written per modality.

    Resumable: rows the run already embedded (committed, or staged before a crash) are skipped; every
    `chunk_rows` rows are staged durably, and each column is written in one commit tagged `emb-<name>`.
    """
    from mmpt.embed.compute import iter_embeddings
    from mmpt.embed.export import EmbeddingWriter

    if chunk_rows < 1 or batch_size < 1:
        raise ConfigError("batch size and chunk rows must be at least 1")
    name = run_name(run, name)
    has = encoder.modalities if encoder is not None else model_modalities(run)
    ds = _open(data)
    wanted = _wanted(has, ds.modalities(), modalities, f"run {name}'s model")
    if encoder is None:
        encoder = load_model(run, device)
    writers = {
        m: EmbeddingWriter(ds.uri, name, m, encoder.dim, storage_options=ds.storage_options) for m in wanted
    }
    done = {m: writer.done_ids() for m, writer in writers.items()}
    counts, groups = _plan(ds.lance, split, done)
    for m, writer in writers.items():
        log.info("%s: %d rows to embed, %d already done", writer.column, counts[m], len(done[m]))
    buffers: dict[str, list] = {m: [] for m in wanted}
    embedded = dict.fromkeys(wanted, 0)
    held = 0  # rows embedded since the last flush

    def flush() -> None:  # stage every modality at the same row boundary, so a resume stays one group
        for m, parts in buffers.items():
            if parts:
                ids = [i for p in parts for i in p.ids]
                writers[m].add(ids, np.concatenate([p.vectors for p in parts]))
                embedded[m] += len(ids)
            buffers[m] = []

    total = sum(len(rows) for _, rows in groups)
    bar = tqdm(total=total, disable=not progress, unit="row", desc=f"embed {name}", dynamic_ncols=True)
    try:
        for group, rows in groups:
            batches = iter_embeddings(
                encoder.model,
                ds,
                list(group),
                rows=rows,
                batch_size=batch_size,
                device=encoder.device,
                num_workers=num_workers,
                progress=bar,
            )
            with closing(batches):  # stops the loader's workers even when staging fails
                for ids, parts in batches:
                    for m, part in parts.items():
                        if len(part.ids):
                            buffers[m].append(part)
                    held += len(ids)
                    if held >= chunk_rows:
                        flush()
                        held = 0
        flush()
    finally:
        bar.close()
    written = {}
    for m, writer in writers.items():
        written[m] = writer.pending()
        writer.commit()
        if embedded[m] < counts[m]:  # the loader marks undecodable blobs missing
            log.warning(
                "%s: %d rows could not be decoded and were left out", writer.column, counts[m] - embedded[m]
            )
    return written


def embedded_rows(data: Any, run: str | Path, modality: str) -> int:
    """How many rows hold a run's embedding of `modality` (0 without the column); `run` is a folder or a name."""
    column = embedding_column(_as_name(run), modality)
    lds = _open(data).lance
    return lds.count_rows(filter=f"`{column}` IS NOT NULL") if column in lds.schema.names else 0


# -- search ------------------------------------------------------------------------------------------


def ensure_embedded(
    run: str | Path,
    data: Any,
    modality: str,
    *,
    name: str | None = None,
    encoder: Encoder | None = None,
    device: str = "auto",
    progress: bool = True,
) -> str:
    """The run's column for `modality`, embedding the dataset first (with progress) if the run has not yet."""
    name = run_name(run, name)
    _require(modality, encoder.modalities if encoder else model_modalities(run), f"run {name}'s model")
    uri = _uri(data)
    column = embedding_column(name, modality)
    if column not in as_lance(uri).schema.names:
        embed_run(run, uri, [modality], name=name, progress=progress, encoder=encoder, device=device)
    return column


def _row_vector(uri: str, column: str, row_id: str) -> np.ndarray:
    """The stored vector of one row in `column` (DataError if the row is unknown or has none)."""
    table = as_lance(uri).to_table(columns=[ID, column], filter=f"{ID} = {sql_literal(row_id)}")
    if table.num_rows == 0:
        raise DataError(f"no row with id {row_id!r} in the dataset")
    value = table[column][0].as_py()
    if value is None:
        raise DataError(f"row {row_id!r} has no value in {column} (it lacks that modality)")
    return np.asarray(value, np.float32)


def search_run(
    run: str | Path,
    data: Any,
    *,
    text: str | None = None,
    image: ImageInput | None = None,
    audio: AudioInput | None = None,
    row_id: str | None = None,
    from_modality: str | None = None,
    modality: str,
    k: int = 10,
    split: str | None = None,
    label: str | None = None,
    name: str | None = None,
    index_threshold: int | None = None,
    device: str = "auto",
    progress: bool = True,
) -> list:
    """The k rows whose `modality` embedding is nearest (cosine) to one query: a text, an image, a sound or a row.

    A row-id query uses that row's stored embedding of `from_modality` (default: `modality`) and leaves
    the row itself out. Missing columns are embedded first; a vector index is used above `index_threshold`.
    """
    from mmpt.embed.search import INDEX_THRESHOLD, ensure_index, search

    given = {"text": text, "image": image, "audio": audio, "row id": row_id}
    chosen = [key for key, value in given.items() if value is not None]
    if len(chosen) != 1:
        raise DataError(
            "give exactly one query: a text, an image, an audio clip or a row id"
            + (f" (got {', '.join(chosen)})" if chosen else "")
        )
    if isinstance(text, str) and not text.strip() or isinstance(row_id, str) and not row_id.strip():
        raise DataError("empty query: give a text, an --image, an --audio file or an --id")
    name = run_name(run, name)
    has = model_modalities(run)
    who = f"run {name}'s model"
    _require(modality, has, who)
    uri = _uri(data)
    encoder = None if row_id is not None else load_model(run, device)
    column = ensure_embedded(run, uri, modality, name=name, encoder=encoder, device=device, progress=progress)
    if row_id is not None:
        source = from_modality or modality
        _require(source, has, who)
        source_column = ensure_embedded(run, uri, source, name=name, device=device, progress=progress)
        query = _row_vector(uri, source_column, row_id)
    else:
        assert encoder is not None  # loaded above for every query but a row id
        if text is not None:
            query = encoder.embed_text([text])[0]
        elif image is not None:
            query = encoder.embed_images([image])[0]
        else:
            query = encoder.embed_audio([audio])[0]
    ensure_index(uri, column, INDEX_THRESHOLD if index_threshold is None else index_threshold)
    exclude = [row_id] if row_id is not None else []
    return search(uri, column, query, k, split=split, label=label, exclude_ids=exclude)[0]


def search_text(
    run: str | Path,
    data: Any,
    query: str,
    modality: str,
    k: int = 10,
    split: str | None = None,
    label: str | None = None,
    **kwargs: Any,
) -> list:
    """The k rows of `modality` nearest to a text query (see `search_run`)."""
    return search_run(run, data, text=query, modality=modality, k=k, split=split, label=label, **kwargs)


__all__ = [
    "ensure_embedded",
    "Encoder",
    "load_model",
    "embeddings",
    "embed_run",
    "search_run",
    "search_text",
    "run_name",
    "embedded_rows",
    "model_modalities",
    "checkpoint_dir",
]
