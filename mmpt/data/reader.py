"""Map-style dataset over a pinned Lance version: one BatchItem in, one decoded batch dict out.

Each batch costs one `take` for the scalar columns and one `read_blobs` per blob modality; decoding runs
in the DataLoader worker that builds the batch. Workers reopen the dataset by (uri, version, options).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Any

import lance
import numpy as np
import torch
from torch.utils.data import Dataset

from mmpt.data.audio import decode_audio, fit_length
from mmpt.data.collate import stack_with_mask
from mmpt.data.sampler import BatchItem
from mmpt.data.seeding import private_rng, reseed, row_seeds
from mmpt.data.transforms import build_image_transform, decode_image, split_batch_normalize
from mmpt.models.spec import InputSpec
from mmpt.models.tokenizer import build_tokenizer
from mmpt.store.schema import ID, LABEL, TEXT, sha_column

FAILURES = "_decode_failures"  # batch key carrying [(modality, row id, reason)] back to the loader


@lru_cache(maxsize=4)
def _cached_tokenizer(spec: InputSpec):
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
    ) -> None:
        self.uri, self.version, self.storage_options = uri, version, storage_options
        self.spec, self.modalities, self.train, self.seed = spec, tuple(modalities), train, seed
        self.image_augment = image_augment if train else False
        self.verify_sha256 = verify_sha256
        self._ds = dataset
        self._tokenizer = self._image_transform = self._batch_normalize = None

    def __getstate__(self) -> dict:
        # Never pickle the LanceDataset or the built transforms: workers rebuild them lazily.
        return {**self.__dict__, "_ds": None, "_tokenizer": None, "_image_transform": None,
                "_batch_normalize": None}

    @property
    def lance(self) -> lance.LanceDataset:
        if self._ds is None:
            self._ds = lance.dataset(self.uri, version=self.version, storage_options=self.storage_options)
        return self._ds

    def __getitem__(self, item: BatchItem) -> dict[str, Any]:
        positions = item.positions.tolist()
        sha_cols = [sha_column(m) for m in self.modalities if m in ("image", "audio") and self.verify_sha256]
        table = self.lance.take(positions, columns=[ID, TEXT, LABEL, *sha_cols]).to_pydict()
        seeds = row_seeds(self.seed, item.epoch, item.batch_index, item.slots) if self.train else None
        batch: dict[str, Any] = {
            "ids": table[ID],
            "labels": table[LABEL],
            "index": torch.from_numpy(item.positions.astype(np.int64)),
            "padded": torch.from_numpy(item.padded.astype(bool)),
        }
        failures: list[tuple[str, str, str]] = []
        if "text" in self.modalities:
            batch["text"], batch["text_mask"] = self._text(table[TEXT])
        for modality in ("image", "audio"):
            if modality not in self.modalities:
                continue
            blobs = [b for _, b in self.lance.read_blobs(modality, indices=positions, preserve_order=True)]
            shas = table.get(sha_column(modality), [None] * len(blobs))
            values = []
            for i, (blob, sha) in enumerate(zip(blobs, shas, strict=True)):
                try:
                    values.append(self._decode(modality, blob, sha, seeds[i] if seeds else None))
                except Exception as exc:  # a corrupt blob must not stop training: mark it missing
                    failures.append((modality, table[ID][i], f"{type(exc).__name__}: {exc}"))
                    values.append(None)
            if modality == "image" and self._batch_normalize is not None:  # values are uint8 arrays
                batch[modality], batch[f"{modality}_mask"] = self._batch_normalize(values, self.spec.image_size)
            else:
                batch[modality], batch[f"{modality}_mask"] = stack_with_mask(values, *self._shape(modality))
        batch[FAILURES] = failures
        return batch

    def __len__(self) -> int:  # only the sampler indexes this dataset; the length is the row count
        return self.lance.count_rows()

    def _text(self, texts: list[str | None]) -> tuple[torch.Tensor, torch.Tensor]:
        if self._tokenizer is None:
            self._tokenizer = _cached_tokenizer(self.spec)
        present = [i for i, t in enumerate(texts) if t is not None]
        tokens = torch.zeros((len(texts), self.spec.context_length), dtype=torch.long)
        if present:
            tokens[present] = self._tokenizer([texts[i] for i in present]).long()
        mask = torch.zeros(len(texts), dtype=torch.bool)
        mask[present] = True
        return tokens, mask

    def _shape(self, modality: str) -> tuple[tuple[int, ...], torch.dtype]:
        if modality == "image":
            return (3, self.spec.image_size, self.spec.image_size), torch.float32
        return (self.spec.clip_samples,), torch.float32

    def _decode(
        self, modality: str, blob: bytes | None, sha: str | None, seed: int | None
    ) -> torch.Tensor | np.ndarray | None:
        if blob is None:
            return None
        if sha is not None and hashlib.sha256(blob).hexdigest() != sha:
            raise ValueError("sha256 mismatch")
        if modality == "image":
            if self._image_transform is None:
                # The per-image part of open_clip's transform; ToTensor + Normalize then run once per batch.
                transform = build_image_transform(self.spec, self.image_augment)
                split = split_batch_normalize(transform)
                self._image_transform, self._batch_normalize = split if split else (transform, None)
            image = decode_image(blob)
            if seed is None or not self.image_augment:
                image = self._image_transform(image)
            else:
                with private_rng():
                    reseed(seed)
                    image = self._image_transform(image)
            if self._batch_normalize is None:
                return image
            return self._batch_normalize.as_pixels(image, self.spec.image_size)
        wave = decode_audio(blob, self.spec.sample_rate)
        rng = np.random.default_rng(seed) if seed is not None else None
        return fit_length(wave, self.spec.clip_samples, rng)
