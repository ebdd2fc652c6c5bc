"""What a model expects of its inputs: the one object the data pipeline needs from a model."""

from __future__ import annotations

from dataclasses import asdict, dataclass

# A batch key set by `mmpt.data.device.to_device`: the modalities whose mask was all True on the CPU, so the
# model and the loss skip their mask arithmetic on the device, and with it a host sync per tower and pair.
FULL_MODALITIES = "full_modalities"


@dataclass(frozen=True)
class InputSpec:
    """Input sizes and preprocessing constants of a model's towers (plain data, picklable to workers)."""

    image_size: int = 224
    image_mean: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
    image_std: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)
    sample_rate: int = 16_000
    clip_samples: int = 16_000
    context_length: int = 77
    tokenizer: str = "open_clip"  # "open_clip" (CLIP BPE) or "hf:<local folder>"
    # The text tower gives the same output for tokens cut to the batch's longest caption, so readers cut the
    # padding columns (mmpt.models.tokenizer.trim_padding); set by the model (mmpt.models.text_trim)
    trim_text: bool = False

    def to_dict(self) -> dict:
        return asdict(self)
