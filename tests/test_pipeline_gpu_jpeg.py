"""gpu_jpeg_decode: workers pass JPEG bytes on, the main process decodes them on the device (checked here on the
CPU device, which runs the same code), and without CUDA the option is one ConfigError line."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from mmpt.data.device import decode_jpegs, prefetch, to_device
from mmpt.data.loader import build_loader, check_gpu_jpeg_decode
from mmpt.data.reader import JPEG_BYTES, JPEG_ROWS, JPEG_SIZES, LanceBatchReader
from mmpt.data.sampler import BatchItem
from mmpt.errors import ConfigError
from mmpt.models.spec import InputSpec
from mmpt.store.ingest import ingest

SPEC = InputSpec(image_size=32)


def _encoded(seed: int, fmt: str, size: tuple[int, int] = (48, 40)) -> bytes:
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    pixels = np.stack([xx * 5, yy * 6, (xx + yy) * 3], axis=-1) + rng.integers(0, 30, (h, w, 3))
    buf = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buf, format=fmt, quality=95)
    return buf.getvalue()


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory):
    """Rows: JPEG, PNG, no image, JPEG."""
    images = [_encoded(0, "JPEG"), _encoded(1, "PNG"), None, _encoded(2, "JPEG", (40, 60))]
    df = pd.DataFrame(
        [{"id": f"r{i}", "text": f"row {i}", "image": im, "split": "train"} for i, im in enumerate(images)]
    )
    out = tmp_path_factory.mktemp("gpu_jpeg") / "m.lance"
    return ingest(df, out, quiet=True, workers=1).dataset.lance, images


def _batch(ds, gpu: bool) -> dict:
    reader = LanceBatchReader(ds.uri, ds.version, SPEC, ("image", "text"), train=False, gpu_jpeg_decode=gpu)
    n = ds.count_rows()
    return reader[BatchItem(0, 0, np.arange(n), np.arange(n), np.zeros(n, bool))]


def test_workers_pass_jpeg_bytes_on_and_decode_the_rest(mixed) -> None:
    ds, images = mixed
    batch = _batch(ds, gpu=True)
    assert batch[JPEG_ROWS].tolist() == [0, 3]  # the two JPEGs; the PNG is decoded in the worker
    assert batch[JPEG_SIZES].tolist() == [len(images[0]), len(images[3])]
    assert bytes(batch[JPEG_BYTES].numpy()) == images[0] + images[3]
    assert batch["image_mask"].tolist() == [False, True, False, False]  # set for JPEG rows once decoded
    cpu = _batch(ds, gpu=False)
    assert torch.equal(batch["image"][1], cpu["image"][1])


def test_device_decode_matches_the_cpu_path_within_a_few_levels(mixed) -> None:
    ds, _ = mixed
    cpu = _batch(ds, gpu=False)
    done = to_device(_batch(ds, gpu=True), torch.device("cpu"), SPEC)
    assert JPEG_BYTES not in done and done["image_mask"].tolist() == cpu["image_mask"].tolist()
    # different decoders and resize kernels: compare in uint8 levels, undoing the normalisation
    std = torch.tensor(SPEC.image_std).view(3, 1, 1) * 255
    diff = ((done["image"] - cpu["image"]) * std).abs()
    assert diff.mean() < 1.5 and diff.max() < 24
    assert torch.equal(done["image"][1], cpu["image"][1]) and torch.equal(done["text"], cpu["text"])
    with pytest.raises(ValueError, match="InputSpec"):
        to_device(_batch(ds, gpu=True), torch.device("cpu"))
    assert [b["ids"] for b in prefetch([cpu, cpu], torch.device("cpu"))] == [cpu["ids"], cpu["ids"]]


def test_the_loader_yields_batches_with_their_jpegs_decoded(mixed, monkeypatch: pytest.MonkeyPatch) -> None:
    ds, _ = mixed
    with monkeypatch.context() as patch:
        patch.setattr(torch.cuda, "is_available", lambda: True)  # build it as on a GPU host
        loader = build_loader(ds, SPEC, ("image", "text"), "train", 4, train=False, gpu_jpeg_decode=True)
    loader.jpeg_device = torch.device("cpu")  # decode where the test can run it
    expected = to_device(_batch(ds, gpu=True), torch.device("cpu"), SPEC)
    with loader:
        batch = next(iter(loader))
    assert JPEG_BYTES not in batch and batch["image_mask"].tolist() == [True, True, False, True]
    assert torch.equal(batch["image"], expected["image"])


def test_a_corrupt_jpeg_is_zeros_and_marked_missing() -> None:
    good = torch.frombuffer(bytearray(_encoded(3, "JPEG")), dtype=torch.uint8)
    bad = torch.frombuffer(bytearray(b"\xff\xd8\xff\xe0 broken"), dtype=torch.uint8)
    images, ok = decode_jpegs([good, bad, good], SPEC, torch.device("cpu"))
    assert ok.tolist() == [True, False, True] and images.shape == (3, 3, 32, 32)
    assert torch.equal(images[0], images[2]) and not images[1].any()


def test_without_cuda_the_option_is_one_config_error(mixed, monkeypatch: pytest.MonkeyPatch) -> None:
    ds, _ = mixed
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(
        ConfigError, match="^data.gpu_jpeg_decode needs a CUDA device and none is available; set it to false$"
    ):
        build_loader(ds, SPEC, ("image",), "train", 2, train=True, gpu_jpeg_decode=True)
    with pytest.raises(ConfigError, match="eval image transform only"):
        check_gpu_jpeg_decode(augment=True, cuda=True)
    check_gpu_jpeg_decode(augment=False, cuda=True)


def test_the_training_loop_passes_the_decode_options_on(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """data.gpu_jpeg_decode reaches the loader of `mmpt pretrain` (one ConfigError on a CPU-only machine), and
    data.fast_image_decode=false reaches the training and validation loaders."""
    import mmpt.data.loader as loader_module
    from mmpt.store.synthetic import make_demo_dataset
    from mmpt.train.pretrain import pretrain, resolve_config

    data = make_demo_dataset(tmp_path / "d.lance", n_rows=96, seed=0).uri
    common = {"data": str(data), "model": "tiny", "batch_size": 16, "device": "cpu", "max_steps": 1}
    cfg = resolve_config(**common, overrides=["data.gpu_jpeg_decode=true", "data.num_workers=0"])
    with pytest.raises(ConfigError, match="needs a CUDA device"):
        pretrain(cfg, tmp_path / "run-gpu", progress=False)

    seen: list[bool] = []
    real = loader_module.build_loader

    def recording(*args, **kwargs):
        seen.append(kwargs.get("fast_image_decode", True))
        return real(*args, **kwargs)

    monkeypatch.setattr(loader_module, "build_loader", recording)
    cfg = resolve_config(**common, overrides=["data.fast_image_decode=false", "data.num_workers=0"])
    assert pretrain(cfg, tmp_path / "run-exact", progress=False).step == 1
    assert seen[:2] == [False, False]  # the training and the validation loader
