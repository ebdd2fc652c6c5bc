"""Unit tests of the data pipeline's pieces that need no Lance dataset: audio, image transform, sampler."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from mmpt.data.audio import decode_audio, fit_length
from mmpt.data.collate import stack_with_mask
from mmpt.data.sampler import ShardedBatchSampler
from mmpt.data.seeding import private_rng, reseed, row_seeds
from mmpt.data.transforms import BatchNormalize, build_image_transform, decode_image, split_batch_normalize
from mmpt.errors import ConfigError, DataError
from mmpt.models.spec import InputSpec


def _encode(samples: np.ndarray, rate: int, fmt: str = "WAV") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format=fmt)
    return buf.getvalue()


def test_decode_audio_mixes_stereo_to_mono() -> None:
    t = np.arange(8000) / 8000
    left = 0.5 * np.sin(2 * np.pi * 440 * t)
    stereo = np.stack([left, 0.25 * np.ones_like(t)], axis=1).astype(np.float32)
    wave = decode_audio(_encode(stereo, 8000, "FLAC"), 8000)
    assert wave.dtype == torch.float32 and wave.shape == (8000,)
    expected = (left + 0.25) / 2
    assert np.abs(wave.numpy() - expected).max() < 1e-3  # FLAC is 16-bit here


def test_decode_audio_resamples_and_keeps_pitch() -> None:
    rate, seconds, freq = 22050, 1.0, 500.0
    t = np.arange(int(rate * seconds)) / rate
    wave = decode_audio(_encode((0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32), rate), 16000)
    assert wave.shape == (16000,)
    spectrum = np.abs(np.fft.rfft(wave.numpy()))
    assert abs(np.argmax(spectrum) * 16000 / len(wave) - freq) <= 2


def test_decode_audio_rejects_garbage_and_empty() -> None:
    with pytest.raises(Exception):  # noqa: B017 - soundfile raises its own LibsndfileError
        decode_audio(b"not audio at all", 16000)
    with pytest.raises(ValueError, match="no samples"):
        decode_audio(_encode(np.zeros((0, 1), np.float32), 16000), 16000)


def test_fit_length_centre_crop_random_crop_and_repeat_pad() -> None:
    wave = torch.arange(10, dtype=torch.float32)
    assert fit_length(wave, 4).tolist() == [3, 4, 5, 6]
    assert fit_length(wave, 10) is wave
    assert fit_length(torch.tensor([1.0, 2.0, 3.0]), 7).tolist() == [1, 2, 3, 1, 2, 3, 1]
    starts = {int(fit_length(wave, 4, np.random.default_rng(s))[0]) for s in range(40)}
    assert starts == set(range(7))  # every offset 0..6 is reachable, none beyond
    a = fit_length(wave, 4, np.random.default_rng(5))
    assert torch.equal(a, fit_length(wave, 4, np.random.default_rng(5)))


def test_image_transform_eval_and_seeded_augmentation() -> None:
    spec = InputSpec(image_size=16, image_mean=(0.5, 0.5, 0.5), image_std=(0.5, 0.5, 0.5))
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(buf, format="PNG")
    image = decode_image(buf.getvalue())
    eval_t = build_image_transform(spec, False)
    out = eval_t(image)
    assert out.shape == (3, 16, 16) and out.dtype == torch.float32
    assert torch.equal(out, eval_t(image))
    train_t = build_image_transform(spec, {"scale": (0.2, 0.6)})
    outs = []
    for seed in (1, 1, 2):
        with private_rng():
            reseed(seed)
            outs.append(train_t(image))
    assert torch.equal(outs[0], outs[1]) and not torch.equal(outs[0], outs[2])
    with pytest.raises(ConfigError, match="re_prob"):
        build_image_transform(spec, {"re_prob": 0.5})
    before = torch.get_rng_state()
    with private_rng():
        reseed(3)
        train_t(image)
    assert torch.equal(before, torch.get_rng_state())  # the caller's RNG is untouched


def test_batch_normalize_is_bit_identical_to_the_per_image_transform() -> None:
    spec = InputSpec(image_size=16)
    rng = np.random.default_rng(1)
    images = [Image.fromarray(rng.integers(0, 255, (20 + i, 30, 3), dtype=np.uint8)) for i in range(5)]
    for augment in (False, True, {"scale": (0.3, 0.8)}, {"use_timm": True}):
        transform = build_image_transform(spec, augment)
        steps, normalize = split_batch_normalize(transform)
        assert isinstance(normalize, BatchNormalize)
        expected, pixels = [], []
        for seed, image in enumerate(images):
            with private_rng():
                reseed(seed)
                expected.append(transform(image))
            with private_rng():
                reseed(seed)
                pixels.append(BatchNormalize.as_pixels(steps(image), 16))
        pixels[2], expected[2] = None, torch.zeros(3, 16, 16)  # a missing image is all zeros
        out, mask = normalize(pixels, 16)
        assert torch.equal(out, torch.stack(expected)), augment  # exactly, not approximately
        assert mask.tolist() == [True, True, False, True, True]
    with pytest.raises(ValueError, match="expected \\(16, 16, 3\\)"):
        BatchNormalize.as_pixels(images[0], 16)
    # with random erasing, timm's pipeline does not end in ToTensor + Normalize: it keeps the per-image path
    assert split_batch_normalize(build_image_transform(spec, {"use_timm": True, "re_prob": 0.5})) is None


def test_row_seeds_depend_on_every_coordinate() -> None:
    base = row_seeds(0, 0, 0, np.array([0, 1]))
    assert base[0] != base[1]
    assert row_seeds(0, 0, 0, np.array([0, 1])) == base
    for other in (
        row_seeds(1, 0, 0, np.array([0])),
        row_seeds(0, 1, 0, np.array([0])),
        row_seeds(0, 0, 1, np.array([0])),
    ):
        assert other[0] != base[0]


def test_stack_with_mask_zero_fills() -> None:
    out, mask = stack_with_mask([torch.ones(2), None, torch.full((2,), 3.0)], (2,), torch.float32)
    assert out.tolist() == [[1, 1], [0, 0], [3, 3]] and mask.tolist() == [True, False, True]


def _ranks(n: int, bs: int, ws: int, **kw) -> list[list]:
    return [
        ShardedBatchSampler(np.arange(n) * 10, bs, rank=r, world_size=ws, **kw).items(0) for r in range(ws)
    ]


def test_sampler_train_truncates_to_equal_full_batches() -> None:
    per_rank = _ranks(23, 4, 2, shuffle=True, drop_last=True, seed=3)
    assert [len(items) for items in per_rank] == [2, 2]
    single = ShardedBatchSampler(np.arange(23) * 10, 8, shuffle=True, drop_last=True, seed=3).items(0)
    for b, item in enumerate(single):
        joined = np.concatenate([per_rank[r][b].positions for r in range(2)])
        assert np.array_equal(joined, item.positions)
        assert all(len(per_rank[r][b].positions) == 4 for r in range(2))
    assert len(set(np.concatenate([i.positions for i in single]))) == 16


def test_sampler_eval_pads_by_wrap_around_and_marks_padding() -> None:
    per_rank = _ranks(10, 2, 3, shuffle=False, drop_last=False)
    assert [len(items) for items in per_rank] == [2, 2, 2]  # ceil(10 / 6)
    last = [per_rank[r][1] for r in range(3)]
    assert [len(i.positions) for i in last] == [2, 2, 2]  # 4 left, padded to 6
    rows = np.concatenate([i.positions for items in per_rank for i in items])
    padded = np.concatenate([i.padded for items in per_rank for i in items])
    assert padded.sum() == 2 and sorted(rows[~padded].tolist()) == list(range(0, 100, 10))
    assert rows[padded].tolist() == [0, 10]  # wrap-around from the start of the order
    single = ShardedBatchSampler(np.arange(10), 4, shuffle=False, drop_last=False).items(0)
    assert [len(i.positions) for i in single] == [4, 4, 2] and not any(i.padded.any() for i in single)


def test_sampler_reseeds_per_epoch_and_skips_batches() -> None:
    s = ShardedBatchSampler(np.arange(50), 5, shuffle=True, drop_last=True, seed=7)
    e0, e1 = s.order(0), s.order(1)
    assert not np.array_equal(e0, e1) and sorted(e0) == list(range(50))
    assert np.array_equal(
        e1, ShardedBatchSampler(np.arange(50), 5, shuffle=True, drop_last=True, seed=7).order(1)
    )
    assert not np.array_equal(
        e1, ShardedBatchSampler(np.arange(50), 5, shuffle=True, drop_last=True, seed=8).order(1)
    )
    tail = s.items(1, start_batch=7)
    assert [i.batch_index for i in tail] == [7, 8, 9]
    assert np.array_equal(tail[0].positions, s.items(1)[7].positions)


def test_sampler_rejects_bad_arguments() -> None:
    with pytest.raises(DataError, match=r"batch size 16 is larger than the 10 rows of split 'train'"):
        ShardedBatchSampler(np.arange(10), 16, shuffle=True, drop_last=True, split="train")
    with pytest.raises(DataError, match=r"batch size 12 \(2 ranks x 6\) is larger"):
        ShardedBatchSampler(np.arange(10), 6, shuffle=True, drop_last=True, world_size=2, split="train")
    with pytest.raises(DataError, match="rank 2"):
        ShardedBatchSampler(np.arange(10), 2, shuffle=True, drop_last=True, rank=2, world_size=2)
    with pytest.raises(DataError, match="at least 1"):
        ShardedBatchSampler(np.arange(10), 0, shuffle=False, drop_last=False)
    assert len(ShardedBatchSampler(np.arange(10), 16, shuffle=False, drop_last=False)) == 1
