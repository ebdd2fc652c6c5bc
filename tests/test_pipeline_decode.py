"""The faster decode path against the one it replaced: bit-exact audio and normalisation, bounded image error."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from mmpt.data.audio import decode_audio, mix_to_mono, read_pcm_wav
from mmpt.data.transforms import (
    DRAFT_TOLERANCE,
    BatchNormalize,
    build_image_transform,
    decode_image,
    fast_eval_steps,
    split_batch_normalize,
)
from mmpt.models.spec import InputSpec


def _wav(samples: np.ndarray, rate: int, subtype: str, fmt: str = "WAV") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def _old_decode_audio(data: bytes, sample_rate: int) -> torch.Tensor:
    """The decode this module replaced: soundfile floats, numpy's channel mean, torchaudio's Resample."""
    import torchaudio

    samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    wave = torch.from_numpy(np.ascontiguousarray(samples.mean(axis=1, dtype=np.float32)))
    return wave if rate == sample_rate else torchaudio.transforms.Resample(rate, sample_rate)(wave)


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "PCM_32"])
@pytest.mark.parametrize("channels", [1, 2, 3, 6])
def test_numpy_wav_reader_and_mono_mix_match_soundfile_bit_for_bit(subtype: str, channels: int) -> None:
    rng = np.random.default_rng(channels)
    samples = np.clip(rng.normal(0, 0.4, (4801, channels)), -1, 1).astype(np.float32)
    data = _wav(samples, 48_000, subtype)
    expected, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    decoded = read_pcm_wav(data)
    assert decoded is not None and decoded[1] == rate
    assert decoded[0].dtype == np.float32 and np.array_equal(decoded[0], expected)
    assert np.array_equal(mix_to_mono(expected), expected.mean(axis=1, dtype=np.float32))
    for target in (48_000, 16_000, 22_050):
        assert torch.equal(decode_audio(data, target), _old_decode_audio(data, target))


def test_other_audio_formats_still_go_through_soundfile_unchanged() -> None:
    samples = (0.3 * np.sin(np.linspace(0, 200, 9600))[:, None] * np.ones((1, 2))).astype(np.float32)
    for data in (
        _wav(samples, 48_000, "FLOAT"),
        _wav(samples, 48_000, "PCM_U8"),
        _wav(samples, 48_000, "PCM_16", "FLAC"),
    ):
        if data[:4] == b"RIFF":
            assert read_pcm_wav(data) is None  # float and 8-bit WAV: libsndfile decides
        assert torch.equal(decode_audio(data, 16_000), _old_decode_audio(data, 16_000))
    truncated = _wav(samples, 48_000, "PCM_16")[:-100]
    assert read_pcm_wav(truncated) is None


def test_batch_normalize_table_is_bit_identical_to_the_arithmetic_for_every_level() -> None:
    mean, std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
    levels = np.arange(256, dtype=np.uint8)
    images = [np.stack([np.roll(levels, 7 * c) for c in range(3)], axis=-1).reshape(16, 16, 3)]
    images.append(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8))
    out, mask = BatchNormalize(mean, std)([images[0], None, images[1]], 16)
    pixels = torch.from_numpy(np.stack([images[0], np.zeros_like(images[0]), images[1]]))
    expected = pixels.permute(0, 3, 1, 2).contiguous().to(torch.float32).div(255)  # the previous code
    expected.sub_(torch.tensor(mean).view(1, -1, 1, 1)).div_(torch.tensor(std).view(1, -1, 1, 1))
    expected[1] = 0.0
    assert torch.equal(out, expected) and mask.tolist() == [True, False, True]


def _photo(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A photo-like image: gradients, a sharp-edged rectangle, texture and noise."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([xx / width * 200, yy / height * 180, (xx + yy) / (width + height) * 220], axis=-1)
    base[height // 4 : height // 2, width // 3 : 2 * width // 3] = rng.random(3) * 255
    base += 12 * (np.sin(xx / 4) * np.cos(yy / 5))[..., None] + rng.normal(0, 6, base.shape)
    return np.clip(base, 0, 255).astype(np.uint8)


def _jpeg(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def test_resizing_only_the_centre_crop_moves_pixels_by_at_most_one_level() -> None:
    steps, _ = split_batch_normalize(build_image_transform(InputSpec(image_size=64)))
    fast = fast_eval_steps(steps, 64)
    assert fast is not None
    rng = np.random.default_rng(0)
    for w, h in ((100, 75), (75, 100), (160, 90), (64, 80), (64, 64), (333, 201)):
        image = Image.fromarray(_photo(rng, w, h))
        expected, got = np.asarray(steps(image)), np.asarray(fast(image))
        assert got.shape == expected.shape == (64, 64, 3)
        assert np.abs(expected.astype(int) - got.astype(int)).max() <= 1, (w, h)
    # anything but open_clip's eval resize + centre crop keeps its own steps
    train_steps, _ = split_batch_normalize(build_image_transform(InputSpec(image_size=64), True))
    assert fast_eval_steps(train_steps, 64) is None
    assert fast_eval_steps(steps, 32) is None


def test_jpeg_draft_decodes_smaller_within_the_documented_tolerance() -> None:
    spec = InputSpec(image_size=64)
    steps, _ = split_batch_normalize(build_image_transform(spec))
    fast = fast_eval_steps(steps, 64)
    assert fast is not None
    rng = np.random.default_rng(1)
    for w, h, drafted in ((300, 200, (150, 100)), (520, 260, (130, 65)), (100, 140, (100, 140))):
        data = _jpeg(_photo(rng, w, h))
        assert decode_image(data, 64).size == drafted  # shorter side kept >= 64
        expected = np.asarray(steps(decode_image(data))).astype(int)
        diff = np.abs(np.asarray(fast(decode_image(data, 64))).astype(int) - expected)
        assert diff.mean() <= DRAFT_TOLERANCE["mean_abs"], (w, h, diff.mean())
        assert np.quantile(diff, 0.999) <= DRAFT_TOLERANCE["p999_abs"], (w, h)
    png = io.BytesIO()
    Image.fromarray(_photo(rng, 300, 200)).save(png, format="PNG")
    assert decode_image(png.getvalue(), 64).size == (300, 200)  # only JPEG has DCT scaling
