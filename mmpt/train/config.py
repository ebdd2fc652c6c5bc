"""Run configuration as plain data: data, model and train sections (and finetune for fine-tune runs), in TOML."""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import tomli_w

from mmpt.errors import ConfigError
from mmpt.models.config import ModelConfig

PAIRS: tuple[str, ...] = ("image-text", "audio-text", "image-audio")
TRACKERS: tuple[str, ...] = ("tensorboard", "wandb", "mlflow", "trackio")  # what train.report_to may name
# what train.compile_scope may name: each tower's repeated blocks, or whole towers (mmpt.train.compile)
COMPILE_SCOPES: tuple[str, ...] = ("blocks", "towers")

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

_Section = TypeVar("_Section", bound="DataclassInstance")


@dataclass
class DataConfig:
    """Where the examples come from: a Lance dataset pinned to one version, and its splits."""

    dataset: str = ""
    version: int = 0  # 0: the latest version, resolved and written back when the run starts
    train_split: str = "train"
    val_split: str = "val"
    test_split: str = "test"
    num_workers: int = 2
    image_augment: bool = False
    # without augmentation: JPEG draft decode + resize of the centre crop only (mmpt.data.transforms)
    fast_image_decode: bool = True
    gpu_jpeg_decode: bool = False  # decode JPEGs with nvJPEG in the main process (CUDA only, no augmentation)
    storage_options: dict[str, str] = field(default_factory=dict)


@dataclass
class TrainConfig:
    """How to optimise: contrastive pairs and loss, optimiser, schedule, precision, logging and checkpoints."""

    pairs: list[str] = field(default_factory=lambda: list(PAIRS))
    pair_weights: dict[str, float] = field(default_factory=dict)
    loss: str = "clip"  # clip (symmetric InfoNCE) or siglip
    epochs: int = 10
    max_steps: int = 0  # 0: epochs decide
    batch_size: int = 64  # per rank; the global batch is batch_size x world size
    accum_steps: int = 1
    lr: float = 5e-4
    weight_decay: float = 0.1
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    eps: float = 1e-6
    warmup_steps: int = 50
    min_lr_ratio: float = 0.0
    grad_clip: float = 1.0
    precision: str = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU; or fp32 / bf16
    compile: bool | str = "auto"  # torch.compile the towers: auto (on for CUDA), true or false
    compile_backend: str = "inductor"  # torch.compile backend; aot_eager traces without code generation
    compile_scope: str = "blocks"  # blocks: repeated blocks, compiled once for all copies; towers: whole
    grad_checkpointing: bool = False
    seed: int = 0
    device: str = "auto"  # auto, cpu, cuda
    log_every: int = 10
    val_every: int = 0  # steps between validations; 0: at the end of each epoch
    ckpt_every: int = 200  # steps between checkpoints; one is always written at the end
    keep_checkpoints: int = 3
    max_bad_steps: int = 5  # stop after this many non-finite losses in a row
    eval_after: bool = True  # run the evaluation report on the test split when training ends
    early_stop_metric: str = ""  # a validation metric name (e.g. val_loss, val_zero_shot_acc); "" disables
    early_stop_mode: str = "min"  # min or max
    early_stop_patience: int = 0  # validations without improvement before stopping; 0: never stop early
    report_to: list[str] = field(default_factory=list)  # trackers fed every metrics event (TRACKERS)

    def __post_init__(self) -> None:
        self.report_to = normalise_trackers(self.report_to)
        self.compile = normalise_compile(self.compile)
        check_compile_scope(self.compile_scope)

    def compile_on(self, device_type: str) -> bool:
        """Whether the loop compiles the towers on a `device_type` device ("auto": on CUDA only)."""
        return device_type == "cuda" if self.compile == "auto" else bool(self.compile)

    def adam_betas(self) -> tuple[float, float]:
        """`betas` as AdamW takes them; ConfigError unless there are exactly two."""
        if len(self.betas) != 2:
            raise ConfigError(f"train.betas must hold two values (beta1, beta2), got {self.betas}")
        beta1, beta2 = self.betas
        return float(beta1), float(beta2)


@dataclass
class FinetuneConfig:
    """What a fine-tune starts from and what it may change: the [finetune] section (see docs/finetune.md)."""

    source: str = ""  # mmpt run/checkpoint folder, open_clip file, openclip:<model>/<tag>, hf:<text model>
    source_model: str = ""  # model config of an open_clip file with no JSON beside it (preset, name or JSON)
    text_tower: str = ""  # HF folder or hub id ("minilm": the packaged all-MiniLM-L6-v2) as a new text tower
    context_length: int = 32  # tokens of a new HF text tower
    audio_tower: str = ""  # hf:<hub id or folder>: a pretrained HF audio encoder as a new audio tower
    add: list[str] = field(default_factory=list)  # modality towers added freshly initialised, e.g. ["audio"]
    pairs_with: str = ""  # without --pairs: train only the data's pairs that include this modality ("": all)
    freeze: list[str] = field(
        default_factory=lambda: ["auto"]
    )  # towers (image, text, audio, heads); auto: see docs
    freeze_blocks: dict[str, int] = field(default_factory=dict)  # tower -> its stem and first N blocks frozen
    norms_only: bool = False  # train only norms, output projections and logit scales
    tower_lr: dict[str, float] = field(default_factory=dict)  # tower -> lr multiplier
    layer_decay: float = 1.0  # lr x decay^(blocks above); 1: off
    wise_alpha: list[float] = field(default_factory=list)  # WiSE-FT interpolations written as RUN/wise-<a>/
    prompt: str = "a photo of a {label}"  # zero-shot prompt of the reports and of val_zero_shot_* metrics
    task: str = "contrastive"  # contrastive or classify
    label_col: str = "label"  # classify: the label column
    towers: list[str] = field(
        default_factory=list
    )  # classify: towers feeding the head (default: image, audio)
    head: str = (
        "probe"  # classify: probe (frozen towers, linear head on embeddings) or full (towers train too)
    )
    class_weight: str = "balanced"  # classify: balanced (inverse class frequency) or none
    head_lr: float = 1e-2  # classify: lr of the probe head (full mode then trains it at train.lr)
    head_epochs: int = 300  # classify: full-batch epochs of the probe head


@dataclass
class RunConfig:
    """Everything needed to reproduce a run; written to RUN/config.toml (fine-tune runs add [finetune])."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    finetune: FinetuneConfig | None = None

    def require_finetune(self) -> FinetuneConfig:
        """The [finetune] section; ConfigError for a config without one (a pretraining run)."""
        if self.finetune is None:
            raise ConfigError("this config has no [finetune] section: it describes a pretraining run")
        return self.finetune

    def to_dict(self) -> dict[str, Any]:
        d = {
            "data": dataclasses.asdict(self.data),
            "model": self.model.to_dict(),
            "train": dataclasses.asdict(self.train),
        }
        if self.finetune is not None:
            d["finetune"] = dataclasses.asdict(self.finetune)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        unknown = set(d) - {"data", "model", "train", "finetune"}
        if unknown:
            raise ConfigError(
                f"unknown config section(s) {sorted(unknown)}; expected data, model, train, finetune"
            )
        return cls(
            data=_dataclass_from(DataConfig, d.get("data", {}), "data"),
            model=ModelConfig.from_dict(d.get("model", {})),
            train=_dataclass_from(TrainConfig, d.get("train", {}), "train"),
            finetune=_dataclass_from(FinetuneConfig, d["finetune"], "finetune") if "finetune" in d else None,
        )


def _dataclass_from(cls: type[_Section], values: dict[str, Any], section: str) -> _Section:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise ConfigError(
            f"unknown key(s) {sorted(unknown)} in [{section}]; known: {', '.join(sorted(names))}"
        )
    return cls(**values)


def read_toml(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """A TOML file as a dict; a missing file or bad TOML is one ConfigError line naming `what` and the path."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{what} not found: {p}")
    try:
        return tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p} is not valid TOML: {exc}") from None


def load_config(path: str | Path) -> RunConfig:
    """Read a run config from TOML; missing keys take their defaults, unknown keys are an error."""
    return RunConfig.from_dict(read_toml(path))


def save_config(cfg: RunConfig, path: str | Path) -> None:
    """Write the resolved config as TOML (temp file + rename)."""
    p = Path(path)
    tmp = p.with_suffix(".toml.tmp")
    tmp.write_text(tomli_w.dumps(cfg.to_dict()))
    tmp.replace(p)


def apply_overrides(cfg: RunConfig, overrides: list[str]) -> RunConfig:
    """Apply `section.key=value` (value in TOML syntax, bare strings allowed), e.g. `train.lr=1e-4`."""
    d = cfg.to_dict()
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or "." not in key:
            raise ConfigError(f"bad override {item!r}: expected section.key=value, e.g. train.lr=1e-4")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        node = d
        *parents, leaf = key.split(".")
        for part in parents:
            if not isinstance(node.get(part), dict):
                raise ConfigError(f"bad override {item!r}: no section {part!r}")
            node = node[part]
        # a new key is fine inside a field's own table (pair_weights, storage_options, clip, ...): the
        # strict from_dict below still rejects unknown keys of the typed sections
        if leaf not in node and len(parents) < 2:
            raise ConfigError(f"bad override {item!r}: no key {leaf!r} in [{'.'.join(parents)}]")
        node[leaf] = value
    return RunConfig.from_dict(d)


def normalise_pairs(pairs: list[str] | str) -> list[str]:
    """Accept `image-text,audio-text` or a list; order each pair canonically and reject unknown ones."""
    items = pairs.split(",") if isinstance(pairs, str) else list(pairs)
    out = []
    for item in (p.strip() for p in items if p.strip()):
        a, _, b = item.partition("-")
        for canon in PAIRS:
            if {a, b} == set(canon.split("-")):
                out.append(canon)
                break
        else:
            raise ConfigError(f"unknown pair {item!r}; choose from {', '.join(PAIRS)}")
    return out


def normalise_compile(value: bool | str) -> bool | str:
    """train.compile as true, false or "auto" (older configs hold a boolean; "true"/"false" strings too)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("auto", "true", "false"):
        return "auto" if text == "auto" else text == "true"
    raise ConfigError(f'train.compile must be true, false or "auto", got {value!r}')


def check_compile_scope(scope: str) -> str:
    """`scope` if it is one of COMPILE_SCOPES, else ConfigError."""
    if scope not in COMPILE_SCOPES:
        raise ConfigError(f"train.compile_scope must be one of {', '.join(COMPILE_SCOPES)}, got {scope!r}")
    return scope


def normalise_trackers(names: list[str] | str) -> list[str]:
    """`"tensorboard,wandb"` or a list -> known tracker names, in order, once each; "none" or "" -> []."""
    items = names.split(",") if isinstance(names, str) else list(names)
    out: list[str] = []
    for item in (str(n).strip().lower() for n in items):
        if item in ("", "none"):
            continue
        if item not in TRACKERS:
            raise ConfigError(
                f"unknown tracker {item!r} in report_to; choose from {', '.join(TRACKERS)} (or none)"
            )
        if item not in out:
            out.append(item)
    return out
