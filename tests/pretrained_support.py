"""Tiny, randomly initialised pretrained towers placed in a Hugging Face cache layout, for the pretrained-source tests.

`hub_entry(hf_home, "org/name", save)` makes hub/models--org--name/snapshots/<rev>/ + refs/main (the layout
huggingface_hub reads with HF_HUB_OFFLINE=1) and calls `save(snapshot_folder)`; the `save_*` functions write
tiny AST, Whisper, CLAP-audio, BERT (with a WordPiece tokenizer) and open_clip models with `save_pretrained`.
"""

from __future__ import annotations

import json
import string
from collections.abc import Callable
from pathlib import Path

import torch

REVISION = "0123456789abcdef0123456789abcdef01234567"
SAMPLE_RATE = 16_000  # the demo data's rate


def hub_entry(hf_home: Path, repo_id: str, save: Callable[[Path], None]) -> Path:
    """The snapshot folder of `repo_id` in the cache under `hf_home`, filled by `save`."""
    repo = Path(hf_home) / "hub" / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / REVISION
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REVISION)
    torch.manual_seed(0)
    save(snapshot)
    return snapshot


def save_ast(folder: Path) -> None:
    """AST: 16 mel bins, 100 frames (1 s), 2 layers of width 32."""
    from transformers import ASTConfig, ASTFeatureExtractor, ASTModel

    cfg = ASTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_mel_bins=16,
        max_length=100,
        frequency_stride=10,
        time_stride=10,
    )
    ASTModel(cfg).save_pretrained(folder)
    ASTFeatureExtractor(num_mel_bins=16, max_length=100, sampling_rate=SAMPLE_RATE).save_pretrained(folder)


def save_whisper(folder: Path) -> None:
    """Whisper: 16 mel bins, 1 s chunks (100 frames, 50 positions), 2 encoder layers of width 32."""
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    cfg = WhisperConfig(
        d_model=32,
        encoder_layers=2,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        num_mel_bins=16,
        max_source_positions=50,
        max_target_positions=16,
        vocab_size=100,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
    )
    WhisperModel(cfg).save_pretrained(folder)
    WhisperFeatureExtractor(feature_size=16, chunk_length=1, sampling_rate=SAMPLE_RATE).save_pretrained(
        folder
    )


def save_clap(folder: Path) -> None:
    """CLAP's audio model (HTSAT) with its projection: 16 mel bins, 1 s, two stages of width 16 and 32."""
    from transformers import ClapAudioConfig, ClapAudioModelWithProjection, ClapFeatureExtractor

    cfg = ClapAudioConfig(
        spec_size=64,
        num_mel_bins=16,
        window_size=4,
        patch_size=4,
        patch_stride=(4, 4),
        depths=[1, 1],
        num_attention_heads=[1, 2],
        patch_embeds_hidden_size=16,
        hidden_size=32,
        projection_dim=24,
        enable_fusion=False,
    )
    ClapAudioModelWithProjection(cfg).save_pretrained(folder)
    ClapFeatureExtractor(
        feature_size=16,
        sampling_rate=SAMPLE_RATE,
        hop_length=160,
        max_length_s=1,
        fft_window_size=400,
        frequency_max=8000,
    ).save_pretrained(folder)


def save_bert(folder: Path) -> None:
    """A 2-layer BERT of width 32 with a WordPiece tokenizer over letters (every lowercase word splits)."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    letters = list(string.ascii_lowercase) + [f"##{c}" for c in string.ascii_lowercase]
    words = ["a", "the", "of", "photo", "red", "blue", "green", "circle", "square", "star", "sound"]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *dict.fromkeys(words + letters)]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    cfg = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(cfg).save_pretrained(folder)
    pooling = folder / "1_Pooling"
    pooling.mkdir()
    (pooling / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))


def tiny_openclip_config() -> dict:
    """An open_clip model config of mmpt's tiny image and text towers (64 px, 32 tokens)."""
    from mmpt.models.config import tiny_clip_config

    return tiny_clip_config()


def save_openclip(folder: Path) -> None:
    """An open_clip hub repo: open_clip_config.json + open_clip_model.safetensors of a tiny CLIP."""
    import open_clip
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    model = open_clip.CLIP(**tiny_openclip_config())
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()},
        str(folder / "open_clip_model.safetensors"),
    )
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": tiny_openclip_config()}))
