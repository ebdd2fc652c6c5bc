"""The field's standard evaluation protocols (`mmpt eval --protocol NAME`) and the published figures shown
beside a run's own, each with the paper and table it comes from.

Two kinds: `folds` (zero-shot classification over every row, reported per fold of a `fold` column and as the
mean over folds, as LAION-CLAP reports ESC-50 and UrbanSound8K) and `captions` (retrieval between the items
of the test split and all their captions, mmpt.eval.multi_caption). Published values are percentages, as the
papers print them; a report holds fractions.
"""

from __future__ import annotations

from dataclasses import dataclass

from mmpt.errors import ConfigError

CLAP = "LAION-CLAP, Wu et al., ICASSP 2023 (arXiv:2211.06687)"
CLAP_MODEL = "LAION-CLAP HTSAT + RoBERTa"
CLIP = "CLIP, Radford et al., ICML 2021 (arXiv:2103.00020), Table 13"
CLIP_MODEL = "CLIP ViT-L/14@336px, zero-shot"
# LAION-CLAP's zero-shot prompt (its eval_zeroshot_classification.py and README: "This is a sound of " +
# class name, with the underscores of ESC-50's class names written as spaces).
CLAP_PROMPT = "This is a sound of {label}"


@dataclass(frozen=True)
class Reference:
    """One published figure: the report key it sits beside, its value in percent, the model and source."""

    metric: str
    value: float
    model: str
    source: str


@dataclass(frozen=True)
class Protocol:
    """What a protocol evaluates: the kind (folds / captions), the item modality, the split (None: every
    row), the fold count and prompt of the fold kind, the test-set size papers use, the figures shown."""

    name: str
    title: str
    kind: str
    modality: str
    split: str | None
    metrics: tuple[str, ...]
    references: tuple[Reference, ...] = ()
    folds: int = 0
    prompt: str = CLAP_PROMPT
    expected_items: int | None = None


def _clap_retrieval(dataset: str, figures: tuple[float, ...]) -> tuple[Reference, ...]:
    keys = [f"retrieval.{pair}.r@{k}" for pair in ("text_to_audio", "audio_to_text") for k in (1, 5, 10)]
    source = f"{CLAP}, Table 3 ({dataset} test)"
    return tuple(Reference(k, v, CLAP_MODEL, source) for k, v in zip(keys, figures, strict=True))


def _clip_retrieval(dataset: str, figures: tuple[float, ...]) -> tuple[Reference, ...]:
    keys = [f"retrieval.{pair}.r@{k}" for pair in ("image_to_text", "text_to_image") for k in (1, 5, 10)]
    return tuple(
        Reference(k, v, CLIP_MODEL, f"{CLIP} ({dataset})") for k, v in zip(keys, figures, strict=True)
    )


_AUDIO_RETRIEVAL = tuple(
    f"retrieval.{pair}.{m}"
    for pair in ("text_to_audio", "audio_to_text")
    for m in ("r@1", "r@5", "r@10", "mAP@10")
)
_IMAGE_RETRIEVAL = tuple(
    f"retrieval.{pair}.r@{k}" for pair in ("text_to_image", "image_to_text") for k in (1, 5, 10)
)

PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in (
        Protocol(
            "esc50",
            "ESC-50 zero-shot, 5 folds",
            "folds",
            "audio",
            None,
            ("zero_shot.audio.accuracy",),
            (Reference("zero_shot.audio.accuracy", 91.0, CLAP_MODEL, f"{CLAP}, zero-shot classification"),),
            folds=5,
            expected_items=2000,
        ),
        Protocol(
            "urbansound8k",
            "UrbanSound8K zero-shot, 10 folds",
            "folds",
            "audio",
            None,
            ("zero_shot.audio.accuracy",),
            (Reference("zero_shot.audio.accuracy", 77.0, CLAP_MODEL, f"{CLAP}, zero-shot classification"),),
            folds=10,
            expected_items=8732,
        ),
        Protocol(
            "audiocaps",
            "AudioCaps test, text <-> audio, all captions",
            "captions",
            "audio",
            "test",
            _AUDIO_RETRIEVAL,
            _clap_retrieval("AudioCaps", (36.1, 71.8, 83.9, 46.8, 82.9, 90.7)),
        ),
        Protocol(
            "clotho",
            "Clotho evaluation split, text <-> audio, all captions",
            "captions",
            "audio",
            "test",
            _AUDIO_RETRIEVAL,
            _clap_retrieval("Clotho", (16.1, 38.3, 51.1, 22.7, 48.5, 60.8)),
            expected_items=1045,
        ),
        Protocol(
            "coco",
            "MS-COCO 5k test (Karpathy split), text <-> image, all captions",
            "captions",
            "image",
            "test",
            _IMAGE_RETRIEVAL,
            _clip_retrieval("MS-COCO 5k", (58.4, 81.5, 88.1, 37.8, 62.4, 72.2)),
            expected_items=5000,
        ),
        Protocol(
            "flickr30k",
            "Flickr30k 1k test (Karpathy split), text <-> image, all captions",
            "captions",
            "image",
            "test",
            _IMAGE_RETRIEVAL,
            _clip_retrieval("Flickr30k 1k", (88.0, 98.7, 99.4, 68.7, 90.6, 95.2)),
            expected_items=1000,
        ),
    )
}


def get_protocol(name: str) -> Protocol:
    """The protocol called `name`, or ConfigError listing the known ones."""
    try:
        return PROTOCOLS[name.lower()]
    except KeyError:
        raise ConfigError(f"unknown protocol {name!r}; choose one of {', '.join(PROTOCOLS)}") from None
