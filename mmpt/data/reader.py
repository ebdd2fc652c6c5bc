"""Map-style dataset over a pinned Lance version: one BatchItem in, one decoded batch dict out.

Each batch costs one `take` for the scalar columns and one `read_blobs` per blob modality; decoding runs
in the DataLoader worker that builds the batch. Workers reopen the dataset by (uri, version, options).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import lru_cache, partial
from typing import Any, TypeVar

import lance
import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from mmpt.data.audio import decode_audio, fit_length
from mmpt.data.captions import pick_captions
from mmpt.data.collate import stack_with_mask
from mmpt.data.sampler import BatchItem
from mmpt.data.seeding import private_rng, reseed, row_seeds
from mmpt.data.transforms import (
    BatchNormalize,
    ImageTransform,
    build_image_transform,
    decode_image,
    fast_eval_steps,
    split_batch_normalize,
)
from mmpt.models.spec import InputSpec
from mmpt.models.tokenizer import Tokenizer, build_tokenizer, trim_padding
from mmpt.store.schema import ID, LABEL, TEXT, TEXTS, ready_column, sha_column

FAILURES = "_decode_failures"  # batch key carrying [(modality, row id, reason)] back to the loader
# With gpu_jpeg_decode: the batch's JPEG files end to end in one uint8 tensor (one shared-memory segment, not
# one per image), each one's byte count, and their rows in the batch; mmpt.data.device decodes them
JPEG_BYTES, JPEG_SIZES, JPEG_ROWS = "image_jpeg", "image_jpeg_sizes", "image_jpeg_rows"

_T = TypeVar("_T")


@lru_cache(maxsize=4)
def _cached_tokenizer(spec: InputSpec) -> Tokenizer:
    return build_tokenizer(spec)


class LanceBatchReader(Dataset):
    """Builds whole batches (dicts as in docs/architecture.md) from BatchItems of row positions."""

    def __init__(
        self,
        uri: str,
        version: int,
        spec: InputSpec,
        modalities: tuple[str, ...],
        *,
        train: bool,
        seed: int = 0,
        image_augment: bool | dict[str, Any] = False,
        verify_sha256: bool = False,
        storage_options: dict[str, str] | None = None,
        dataset: lance.LanceDataset | None = None,
        fast_image_decode: bool = True,
        gpu_jpeg_decode: bool = False,
    ) -> None:
        self.uri, self.version, self.storage_options = uri, version, storage_options
        self.spec, self.modalities, self.train, self.seed = spec, tuple(modalities), train, seed
        self.image_augment = image_augment if train else False
        self.verify_sha256 = verify_sha256
        # Without augmentation: JPEG draft decode + resize of the centre crop only (transforms.DRAFT_TOLERANCE)
        self.fast_image_decode = fast_image_decode and not self.image_augment
        self.gpu_jpeg_decode = gpu_jpeg_decode
        # Blob columns read per modality: the training-ready copy first (mmpt.store.ready), then the original
        self._blob_columns: dict[str, tuple[str, ...]] | None = None
        self._ds = dataset
        self._tokenizer: Tokenizer | None = None
        # open_clip's image transform, built lazily in each worker; when it ends in ToTensor + Normalize it is
        # split into its per-image PIL steps (`_pil_steps`) and one normalisation of the whole batch.
        self._image_transform: ImageTransform | None = None
        self._pil_steps: Callable[[Image.Image], Image.Image] | None = None
        self._batch_normalize: BatchNormalize | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Never pickle the LanceDataset or the built transforms: workers rebuild them lazily.
        return {
            **self.__dict__,
            "_ds": None,
            "_tokenizer": None,
            "_image_transform": None,
            "_pil_steps": None,
            "_batch_normalize": None,
        }

    @property
    def lance(self) -> lance.LanceDataset:
        if self._ds is None:
            self._ds = lance.dataset(self.uri, version=self.version, storage_options=self.storage_options)
        return self._ds

    def __getitem__(self, item: BatchItem) -> dict[str, Any]:
        positions = item.positions.tolist()
        sha_cols = [sha_column(m) for m in self.modalities if m in ("image", "audio") and self.verify_sha256]
        # Training draws one of an item's several captions per epoch (mmpt.data.captions); eval reads `text`
        many = self.train and "text" in self.modalities and TEXTS in self.lance.schema.names
        table = self.lance.take(
            positions, columns=[ID, TEXT, LABEL, *([TEXTS] if many else []), *sha_cols]
        ).to_pydict()
        seeds = row_seeds(self.seed, item.epoch, item.batch_index, item.slots) if self.train else None
        batch: dict[str, Any] = {
            "ids": table[ID],
            "labels": table[LABEL],
            "index": torch.from_numpy(item.positions.astype(np.int64)),
            "padded": torch.from_numpy(item.padded.astype(bool)),
        }
        failures: list[tuple[str, str, str]] = []
        if "text" in self.modalities:
            texts = table[TEXT]
            if many:
                texts = pick_captions(self.seed, item.epoch, table[ID], texts, table[TEXTS])
            batch["text"], batch["text_mask"] = self._text(texts)
        for modality in ("image", "audio"):
            if modality not in self.modalities:
                continue
            blobs, shas = self._read_blobs(modality, positions, table)
            rows = (modality, table[ID], blobs, shas, seeds, failures)
            key, size = f"{modality}_mask", self.spec.image_size
            if modality == "audio":
                waves = self._decode_all(self._decode_audio, *rows)
                batch[modality], batch[key] = stack_with_mask(waves, (self.spec.clip_samples,), torch.float32)
                continue
            transform, pil_steps, normalize = self._image_transforms()
            if (
                pil_steps is not None and normalize is not None
            ):  # decode to uint8 arrays, normalise in one pass
                pixels: list[Any] = self._decode_all(partial(self._pixels, pil_steps, normalize), *rows)
                if self.gpu_jpeg_decode:
                    # JPEG bytes stay undecoded: the main process decodes them on the GPU (mmpt.data.device)
                    jpeg_rows = [i for i, p in enumerate(pixels) if isinstance(p, bytes)]
                    joined = b"".join(pixels[i] for i in jpeg_rows)
                    batch[JPEG_BYTES] = (
                        torch.frombuffer(bytearray(joined), dtype=torch.uint8)
                        if joined
                        else torch.zeros(0, dtype=torch.uint8)
                    )
                    batch[JPEG_SIZES] = torch.tensor([len(pixels[i]) for i in jpeg_rows], dtype=torch.long)
                    batch[JPEG_ROWS] = torch.tensor(jpeg_rows, dtype=torch.long)
                    pixels = [None if isinstance(p, bytes) else p for p in pixels]
                batch[modality], batch[key] = normalize(pixels, size)
            else:
                images = self._decode_all(partial(self._image, transform), *rows)
                batch[modality], batch[key] = stack_with_mask(images, (3, size, size), torch.float32)
        batch[FAILURES] = failures
        return batch

    def __len__(self) -> int:  # only the sampler indexes this dataset; the length is the row count
        return self.lance.count_rows()

    def _read_blobs(
        self, modality: str, positions: list[int], table: dict[str, list]
    ) -> tuple[list[bytes | None], list[str | None]]:
        """Each row's blob of `modality`, from its training-ready copy where it has one (mmpt.store.ready), and
        the sha256 to check it against (None when not verifying)."""
        if self._blob_columns is None:
            names = set(self.lance.schema.names)
            self._blob_columns = {
                m: tuple(c for c in (ready_column(m), m) if c in names) for m in ("image", "audio")
            }
        columns = self._blob_columns[modality]
        blobs: list[bytes | None] = [None] * len(positions)
        shas: list[str | None] = [None] * len(positions)
        todo = list(range(len(positions)))
        for column in columns:
            if not todo:
                break
            wanted = [positions[i] for i in todo]
            read = [b for _, b in self.lance.read_blobs(column, indices=wanted, preserve_order=True)]
            digests: list[str | None] = [None] * len(todo)
            if self.verify_sha256:
                if column == modality:
                    digests = [table[sha_column(modality)][i] for i in todo]
                else:
                    digests = self.lance.take(wanted, columns=[sha_column(column)]).column(0).to_pylist()
            for i, blob, digest in zip(todo, read, digests, strict=True):
                blobs[i], shas[i] = blob, digest
            todo = [i for i, blob in zip(todo, read, strict=True) if blob is None]
        return blobs, shas

    def _text(self, texts: list[str | None]) -> tuple[torch.Tensor, torch.Tensor]:
        if self._tokenizer is None:
            self._tokenizer = _cached_tokenizer(self.spec)
        present = [(i, t) for i, t in enumerate(texts) if t is not None]
        rows = [i for i, _ in present]
        tokens = torch.zeros((len(texts), self.spec.context_length), dtype=torch.long)
        if present:
            tokens[rows] = self._tokenizer([t for _, t in present]).long()
        mask = torch.zeros(len(texts), dtype=torch.bool)
        mask[rows] = True
        if self.spec.trim_text:  # cut here, on the worker's CPU, so the step never syncs to find the length
            tokens = trim_padding(tokens)
        return tokens, mask

    @staticmethod
    def _decode_all(
        decode: Callable[[bytes, int | None], _T],
        modality: str,
        ids: list[str],
        blobs: list[bytes | None],
        shas: list[str | None],
        seeds: list[int] | None,
        failures: list[tuple[str, str, str]],
    ) -> list[_T | None]:
        """`decode(blob, row seed)` of each blob after checking its sha256 (when given); None where the blob
        is missing or fails (the failure is appended to `failures`)."""
        values: list[_T | None] = []
        for i, (blob, sha) in enumerate(zip(blobs, shas, strict=True)):
            if blob is None:
                values.append(None)
                continue
            try:
                if sha is not None and hashlib.sha256(blob).hexdigest() != sha:
                    raise ValueError("sha256 mismatch")
                values.append(decode(blob, seeds[i] if seeds else None))
            except Exception as exc:  # a corrupt blob must not stop training: mark it missing
                failures.append((modality, ids[i], f"{type(exc).__name__}: {exc}"))
                values.append(None)
        return values

    def _image_transforms(
        self,
    ) -> tuple[ImageTransform, Callable[[Image.Image], Image.Image] | None, BatchNormalize | None]:
        """The image transform, and its (per-image PIL steps, batch normalisation) split when it has one."""
        if self._image_transform is None:
            transform = build_image_transform(self.spec, self.image_augment)
            split = split_batch_normalize(transform)
            self._pil_steps, self._batch_normalize = split if split else (None, None)
            if self._pil_steps is not None and self.fast_image_decode:
                self._pil_steps = fast_eval_steps(self._pil_steps, self.spec.image_size) or self._pil_steps
            self._image_transform = transform
        return self._image_transform, self._pil_steps, self._batch_normalize

    def _image(self, transform: Callable[[Image.Image], _T], blob: bytes, seed: int | None) -> _T:
        """Decode one image and apply `transform`, seeded per row when augmenting."""
        image = decode_image(blob, self.spec.image_size if self.fast_image_decode else None)
        if seed is None or not self.image_augment:
            return transform(image)
        with private_rng():
            reseed(seed)
            return transform(image)

    def _pixels(
        self,
        pil_steps: Callable[[Image.Image], Image.Image],
        normalize: BatchNormalize,
        blob: bytes,
        seed: int | None,
    ) -> np.ndarray | bytes:
        """uint8 [size, size, 3] pixels; with gpu_jpeg_decode, a JPEG's bytes as they are instead."""
        if self.gpu_jpeg_decode and blob[:3] == b"\xff\xd8\xff":
            return blob
        return normalize.as_pixels(self._image(pil_steps, blob, seed), self.spec.image_size)

    def _decode_audio(self, blob: bytes, seed: int | None) -> torch.Tensor:
        wave = decode_audio(blob, self.spec.sample_rate)
        rng = np.random.default_rng(seed) if seed is not None else None
        return fit_length(wave, self.spec.clip_samples, rng)
