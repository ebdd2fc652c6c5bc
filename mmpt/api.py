"""The verbs as Python calls, for notebooks and scripts: the same names, defaults and one-line errors as the CLI.

The long verbs take `background=True` and then return an `mmpt.jobs.Job` at once (the work runs as
`python -m mmpt <verb>` in its own process, so the kernel stays free); otherwise they run here and return
their result. Keyword names are the CLI's flags in snake case (`--batch-size` -> `batch_size`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmpt.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

    from mmpt.embed.projections import Projection
    from mmpt.jobs import Job
    from mmpt.train.finetune import FinetuneResult
    from mmpt.train.loop import TrainResult

PathLike = str | Path


def _given(**kwargs: Any) -> dict[str, Any]:
    """The keyword arguments the caller set (None means "the verb's default")."""
    return {k: v for k, v in kwargs.items() if v is not None and v is not False}


def _job(kind: str, run: PathLike, params: dict[str, Any]) -> Job:
    from mmpt.jobs import Job, start

    job = start(kind, run, **params)
    assert isinstance(job, Job)  # a process job: in_thread is not passed
    return job


def pretrain(
    data: PathLike,
    run: PathLike,
    *,
    model: str | None = None,
    epochs: int | None = None,
    max_steps: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    weight_decay: float | None = None,
    pairs: str | list[str] | None = None,
    loss: str | None = None,
    device: str | None = None,
    seed: int | None = None,
    num_workers: int | None = None,
    config: PathLike | None = None,
    set: list[str] | None = None,  # noqa: A002 - the CLI's --set
    restart: bool = False,
    report_to: str | list[str] | None = None,
    background: bool = False,
    progress: bool = True,
) -> TrainResult | Job:
    """Pretrain a model on a Lance dataset into the run folder `run` (`mmpt pretrain`); `restart=True` starts
    over in a folder that already holds a run (`--restart`: its checkpoints and metrics are deleted first).
    `report_to="tensorboard,wandb"` also sends every metrics event to those trackers (docs/tracking.md).

    >>> job = mmpt.pretrain("corpus.lance", "runs/r1", model="tiny", epochs=3, background=True)
    >>> job.progress()["step"], job.stop()
    """
    params = _given(
        data=str(data),
        model=model,
        epochs=epochs,
        max_steps=max_steps,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        pairs=pairs,
        loss=loss,
        device=device,
        seed=seed,
        num_workers=num_workers,
        config=config and str(config),
        set=set,
        restart=restart,
        report_to=report_to,
    )
    if background:
        return _job("pretrain", run, params)
    from mmpt.jobs.argv import cli_args, parse
    from mmpt.train.commands import apply_data_flags, train_fields
    from mmpt.train.pretrain import pretrain as run_pretrain
    from mmpt.train.pretrain import resolve_config, saved_config

    # the settings go through `mmpt pretrain`'s own parser: the same names, defaults and one-line errors
    kw = parse("pretrain", cli_args("pretrain", run, params))
    base = saved_config(run, data=kw["data"]) if restart and not kw["config_file"] else None
    cfg = resolve_config(
        base,
        config_file=kw["config_file"],
        data=kw["data"],
        model=kw["model"],
        overrides=list(kw["overrides"]),
        **train_fields(kw),
    )
    apply_data_flags(cfg, kw)
    return run_pretrain(cfg, run, restart=restart, progress=progress)


def resume(
    run: PathLike, *, background: bool = False, progress: bool = True
) -> TrainResult | FinetuneResult | Job:
    """Continue a stopped, killed or crashed pretrain or fine-tune run from its latest checkpoint."""
    from mmpt.runs import RunDir

    if background:
        from mmpt.jobs import Job
        from mmpt.jobs import resume as resume_job

        job = resume_job(run)
        assert isinstance(job, Job)
        return job
    kind = "finetune" if "finetune" in RunDir.open(run).config_dict() else "pretrain"
    if kind == "finetune":
        from mmpt.train.finetune import resume_finetune

        return resume_finetune(run, progress=progress)
    from mmpt.train.pretrain import resume as resume_pretrain

    return resume_pretrain(run, progress=progress)


def finetune(
    source: PathLike,
    data: PathLike,
    run: PathLike,
    *,
    background: bool = False,
    progress: bool = True,
    **flags: Any,
) -> FinetuneResult | Job:
    """Fine-tune `source` (a run, an open_clip checkpoint or `hf:FOLDER`) on `data` into `run` (`mmpt finetune`).

    `flags` are `mmpt finetune`'s options in snake case: freeze="text", epochs=3, lr=2e-4, task="classify", ...

    >>> mmpt.finetune("runs/r1", "corpus.lance", "runs/ft1", freeze="text", epochs=3)
    """
    params = {"source": str(source), "data": str(data), **_given(**flags)}
    if background:
        return _job("finetune", run, params)
    from mmpt.jobs.argv import cli_args, parse
    from mmpt.train.commands import finetune_config_from_flags
    from mmpt.train.finetune import finetune as run_finetune

    # the flags go through `mmpt finetune`'s own parser: the same names, defaults and one-line errors
    cfg, pairs_given = finetune_config_from_flags(parse("finetune", cli_args("finetune", run, params)))
    return run_finetune(cfg, run, pairs_given=pairs_given, progress=progress)


def evaluate(
    run: PathLike,
    data: PathLike | None = None,
    *,
    split: str = "test",
    prompt: str = "a photo of a {label}",
    probe_split: str | None = None,
    protocol: str | None = None,
    name: str | None = None,
    device: str = "auto",
    batch_size: int = 128,
    background: bool = False,
    progress: bool = True,
) -> dict[str, Any] | Job:
    """Evaluate a run on a split (`mmpt eval`): zero-shot, retrieval, label match, optionally a linear probe.

    With `protocol` (esc50, urbansound8k, audiocaps, clotho, coco, flickr30k) a standard protocol instead,
    its published figures under report["protocol"]["published"]. The report is also saved as
    RUN/eval/<name or protocol or split>.json.

    >>> mmpt.evaluate("runs/r1", split="test")["zero_shot"]["image"]["accuracy"]
    >>> mmpt.evaluate("runs/r1", "esc50.lance", protocol="esc50")["zero_shot"]["audio"]["accuracy"]
    """
    if background:
        return _job(
            "eval",
            run,
            _given(
                data=data and str(data),
                split=split,
                prompt=prompt,
                probe_split=probe_split,
                protocol=protocol,
                name=name,
                device=device,
                batch_size=batch_size,
            ),
        )
    from mmpt.eval.run import evaluate_run

    return evaluate_run(
        str(run),
        None if data is None else str(data),
        split,
        name=name,
        prompt=prompt,
        probe_split=probe_split,
        protocol=protocol,
        device=device,
        batch_size=batch_size,
        progress=progress,
    )


def _dataset_arg(data: Any) -> Any:
    """A path as a string; a dataset handle (`mmpt.open_dataset(uri, storage_options=...)`, a LanceDataset) as
    given, so it keeps its storage options (s3:// without the AWS_* environment)."""
    return str(data) if isinstance(data, str | Path) else data


def embed(
    run: PathLike,
    data: Any,
    *,
    modalities: list[str] | None = None,
    split: str | None = None,
    batch_size: int = 256,
    device: str = "auto",
    num_workers: int = 0,
    name: str | None = None,
    background: bool = False,
    progress: bool = True,
) -> dict[str, int] | Job:
    """Write the run's `emb_<run>_<modality>` columns into the dataset, resumably (`mmpt embed`).

    Returns the rows written per modality.

    >>> mmpt.embed("runs/r1", "corpus.lance")
    {'image': 2869, 'text': 2902, 'audio': 2827}
    """
    if background:
        if not isinstance(
            data, str | Path
        ):  # a child process gets flags: a handle's storage options would be lost
            raise ConfigError("embed(background=True) takes the dataset's path or URI, not a dataset handle")
        return _job(
            "embed",
            run,
            _given(
                data=str(data),
                modalities=modalities and ",".join(modalities),
                split=split,
                batch_size=batch_size,
                device=device,
                num_workers=num_workers,
                name=name,
            ),
        )
    from mmpt.embed.api import embed_run

    return embed_run(
        str(run),
        _dataset_arg(data),
        modalities,
        split,
        batch_size=batch_size,
        device=device,
        num_workers=num_workers,
        name=name,
        progress=progress,
    )


def search(
    run: PathLike,
    data: Any,
    query: Any = None,
    *,
    modality: str,
    k: int = 10,
    image: Any = None,
    audio: Any = None,
    row_id: str | None = None,
    split: str | None = None,
    label: str | None = None,
    device: str = "auto",
    progress: bool = False,
) -> pd.DataFrame:
    """The k rows of `modality` nearest to a text `query`, an `image`, an `audio` clip or a row (`mmpt search`).

    `.attrs["note"]` says how many rows the search could not cover (appended after the run embedded), or None.

    >>> mmpt.search("runs/r1", "corpus.lance", "a dog barking", modality="audio", k=5)
    """
    import pandas as pd

    from mmpt.embed.api import search_run

    hits = search_run(
        str(run),
        _dataset_arg(data),
        text=query,
        image=image,
        audio=audio,
        row_id=row_id,
        modality=modality,
        k=k,
        split=split,
        label=label,
        device=device,
        progress=progress,
    )
    frame = pd.DataFrame([h.to_dict() for h in hits], columns=["id", "score", "text", "label", "split"])
    frame.attrs["note"] = hits.note  # rows not searched (appended after the run embedded), or None
    return frame


def project(
    run: PathLike,
    data: PathLike,
    modality: str,
    *,
    method: str = "pca",
    seed: int = 0,
    name: str | None = None,
    background: bool = False,
    progress: bool = True,
) -> Projection | Job:
    """2-D projection (PCA, UMAP or t-SNE) of a run's embeddings, cached as a dataset column (`mmpt project`).

    >>> p = mmpt.project("runs/r1", "corpus.lance", "image", method="umap")
    >>> p.ids, p.values  # row ids and an (N, 2) array
    """
    if background:
        return _job(
            "project", run, _given(data=str(data), modality=modality, method=method, seed=seed, name=name)
        )
    from mmpt.embed.api import ensure_embedded
    from mmpt.embed.encoder import run_name
    from mmpt.embed.projections import project as run_project

    ensure_embedded(str(run), str(data), modality, name=name, progress=progress)
    quiet = None if progress else (lambda fraction, message: None)
    return run_project(str(data), run_name(run, name), modality, method, seed=seed, progress=quiet)
