"""Pretrained weights by name, from the standard local caches: Hugging Face hub ids and open_clip tags.

`hf:<org/name>` resolves to the model's snapshot folder in the Hugging Face cache (HF_HUB_CACHE, else
HF_HOME/hub, else ~/.cache/huggingface/hub), downloading it first where there is a network and HF_HUB_OFFLINE
is not set. `openclip:<model>/<tag>` goes through open_clip's pretrained registry: tags hosted on the hub
land in the same cache, tags hosted at a URL in OPEN_CLIP_CACHE (else open_clip's ~/.cache/clip);
`openclip:hf-hub:<org/name>` is an open_clip repo on the hub (open_clip_config.json + weights).
Settings are read when a name is resolved, so an environment set after import counts. A name missing from
the cache while offline is one line naming the cache folder and how to fill it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from mmpt.errors import ConfigError
from mmpt.models.config import ModelConfig

HF_PREFIX = "hf:"
OPENCLIP_PREFIX = "openclip:"
OPENCLIP_HUB = "hf-hub:"
# what a transformers model needs: configs, tokenizer / feature-extractor files and safetensors weights
HF_MODEL_FILES = ("*.json", "*.txt", "*.model", "*.safetensors", "*.tiktoken")
HF_TORCH_WEIGHTS = ("*.bin",)  # fetched only when a repo has no safetensors (read with weights_only)
OPENCLIP_CONFIG = "open_clip_config.json"
OPENCLIP_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[A-Za-z0-9][\w.\-]*)?$")


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in ("1", "ON", "YES", "TRUE")


def hf_offline() -> bool:
    """Whether HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) forbids downloads, read from the environment now."""
    return _truthy("HF_HUB_OFFLINE") or _truthy("TRANSFORMERS_OFFLINE")


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache folder: HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.path.expandvars(os.environ["HF_HUB_CACHE"])).expanduser()
    if os.environ.get("HUGGINGFACE_HUB_CACHE"):
        return Path(os.path.expandvars(os.environ["HUGGINGFACE_HUB_CACHE"])).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.path.expandvars(os.environ["HF_HOME"])).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(xdg).expanduser() / "huggingface" / "hub"


def openclip_cache_dir() -> Path:
    """Where open_clip weights hosted at a URL are cached: OPEN_CLIP_CACHE, else open_clip's ~/.cache/clip."""
    return Path(os.path.expandvars(os.environ.get("OPEN_CLIP_CACHE") or "~/.cache/clip")).expanduser()


def hf_repo_folder(repo_id: str) -> Path:
    """The cache folder of a hub model repo (models--org--name), whether or not it exists."""
    return hf_cache_dir() / ("models--" + repo_id.replace("/", "--"))


def is_hub_id(name: str) -> bool:
    """True for a name shaped like a hub repo id ("org/name" or "name", optionally "@revision")."""
    repo = name.split("@", 1)[0]
    return bool(_REPO_ID.match(repo)) and ".." not in repo and not repo.endswith((".", "-"))


def _missing(what: str, repo_id: str, files: str = "", reason: str = "") -> ConfigError:
    where = hf_repo_folder(repo_id)
    why = " (HF_HUB_OFFLINE is set)" if hf_offline() else f" and could not be downloaded ({reason})"
    return ConfigError(
        f"{what} is not in the Hugging Face cache at {where}{why}: fill it on a machine with a network with "
        f"`hf download {repo_id}{files}` and copy {hf_cache_dir()} here (or point HF_HOME at a copy)"
    )


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def hf_snapshot(repo_id: str, *, allow: tuple[str, ...] = HF_MODEL_FILES) -> Path:
    """The local snapshot folder of a hub model (`repo_id[@revision]`), downloaded first when online.

    Only files matching `allow` are downloaded; a repo without safetensors also gets its torch weights
    (which transformers and `safe_load` read with weights_only, never unpickling code).
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HFValidationError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    repo, _, revision = repo_id.partition("@")
    offline = hf_offline()

    def fetch(patterns: tuple[str, ...]) -> Path:
        try:
            folder = snapshot_download(
                repo,
                revision=revision or None,
                cache_dir=hf_cache_dir(),
                local_files_only=offline,
                allow_patterns=list(patterns),
            )
        except (LocalEntryNotFoundError, OfflineModeIsEnabled) as e:
            raise _missing(f"Hugging Face model {repo_id}", repo, reason=_first_line(e)) from None
        except (RepositoryNotFoundError, RevisionNotFoundError, HFValidationError) as e:
            raise ConfigError(f"no Hugging Face model {repo_id}: {_first_line(e)}") from None
        except OSError as e:  # network and HTTP errors (HfHubHTTPError is an OSError too)
            raise _missing(f"Hugging Face model {repo_id}", repo, reason=_first_line(e)) from None
        return Path(str(folder))

    folder = fetch(allow)
    if not offline and not any(folder.glob("*.safetensors")) and "*.safetensors" in allow:
        folder = fetch(HF_TORCH_WEIGHTS)
    return folder


def resolve_hf_model(spec: str) -> Path:
    """A local HF model folder from "hf:<folder>", "<folder>" or a hub id "hf:<org/name>[@revision]"."""
    name = spec[len(HF_PREFIX) :] if spec.startswith(HF_PREFIX) else spec
    folder = Path(name).expanduser()
    if (folder / "config.json").is_file():
        return folder.resolve()
    pathlike = name.startswith(("/", ".", "~")) or folder.exists()
    if pathlike or not is_hub_id(name):
        raise ConfigError(
            f"{name} is not a local Hugging Face model folder (no config.json) nor a hub model id "
            "(org/name): give a folder with config.json, or a hub id found in the Hugging Face cache"
        )
    folder = hf_snapshot(name)
    if not (folder / "config.json").is_file():
        raise ConfigError(f"the cached Hugging Face model {name} at {folder} has no config.json")
    return folder


@dataclass
class OpenClipSource:
    """Where an `openclip:` name resolved to: a weights file and the model config it fits (None: the
    open_clip_config.json beside the weights)."""

    weights: Path
    config: ModelConfig | None
    description: str


def resolve_openclip(spec: str) -> OpenClipSource:
    """The weights and model config of "openclip:<model>/<tag>" or "openclip:hf-hub:<org/name>"."""
    name = spec[len(OPENCLIP_PREFIX) :] if spec.startswith(OPENCLIP_PREFIX) else spec
    if name.startswith(OPENCLIP_HUB):
        return _openclip_hub(name[len(OPENCLIP_HUB) :])
    model, sep, tag = name.partition("/")
    if not sep or not model or not tag:
        raise ConfigError(
            f"bad open_clip name {spec!r}: expected openclip:<model>/<pretrained tag> (e.g. "
            "openclip:ViT-B-32/laion2b_s34b_b79k) or openclip:hf-hub:<org/name>"
        )
    import open_clip
    from open_clip.pretrained import get_pretrained_cfg, list_pretrained_tags_by_model

    pcfg = get_pretrained_cfg(model, tag)
    if not pcfg:
        tags = list_pretrained_tags_by_model(model)
        known = f"its tags: {', '.join(tags)}" if tags else "see open_clip.list_pretrained()"
        raise ConfigError(f"open_clip has no pretrained weights {model}/{tag}; {known}")
    if model not in open_clip.list_models():
        raise ConfigError(f"open_clip has no model config named {model!r}")
    if pcfg.get("file"):
        weights = Path(pcfg["file"])
    elif pcfg.get("hf_hub"):
        # open_clip's convention: "org/name/" is the repo's default weights, "org/name/file.pt" one file
        repo, filename = os.path.split(pcfg["hf_hub"])
        candidates = _safe_first(filename or OPENCLIP_WEIGHTS[1])
        weights = _hub_file(repo, candidates, f"open_clip weights {model}/{tag}")
    elif pcfg.get("url"):
        weights = _url_file(pcfg["url"], f"open_clip weights {model}/{tag}")
    else:
        raise ConfigError(f"open_clip's registry gives no location for {model}/{tag}")
    return OpenClipSource(weights, _registry_config(model, pcfg), f"open_clip {model}/{tag}")


def _safe_first(filename: str) -> tuple[str, ...]:
    """open_clip's order: a .safetensors twin of a .bin/.pth file first, then the file itself."""
    if filename == OPENCLIP_WEIGHTS[1]:
        return OPENCLIP_WEIGHTS
    if filename.endswith((".bin", ".pth")):
        return (filename[:-4] + ".safetensors", filename)
    return (filename,)


def _hub_file(repo: str, candidates: tuple[str, ...], what: str) -> Path:
    """The first of `candidates` in hub repo `repo`, from the cache (downloaded first when online)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, OfflineModeIsEnabled

    reason = ""
    for filename in candidates:
        try:
            return Path(
                hf_hub_download(repo, filename, cache_dir=hf_cache_dir(), local_files_only=hf_offline())
            )
        except (EntryNotFoundError, LocalEntryNotFoundError, OfflineModeIsEnabled, OSError) as e:
            reason = _first_line(e)
    raise _missing(what, repo, f" {candidates[0]}", reason)


def _url_file(url: str, what: str) -> Path:
    """open_clip weights hosted at a URL: the file of that name in openclip_cache_dir(), fetched when online."""
    folder = openclip_cache_dir()
    target = folder / os.path.basename(url)
    if target.is_file():
        return target
    if hf_offline():
        raise ConfigError(
            f"{what} is not in the open_clip cache at {target} (HF_HUB_OFFLINE is set): download {url} "
            f"there on a machine with a network (or set OPEN_CLIP_CACHE to a folder holding it)"
        )
    from open_clip.pretrained import download_pretrained_from_url

    try:
        return Path(download_pretrained_from_url(url, cache_dir=str(folder)))
    except (OSError, RuntimeError, ValueError) as e:
        raise ConfigError(
            f"{what} is not in the open_clip cache at {target} and could not be downloaded "
            f"({_first_line(e)}): download {url} there, or set OPEN_CLIP_CACHE to a folder holding it"
        ) from None


def _registry_config(model: str, pcfg: dict) -> ModelConfig:
    """The ModelConfig of an open_clip builtin model, with the pretrained tag's QuickGELU and image norm."""
    from mmpt.models.presets import resolve_model_config

    d = resolve_model_config(model).to_dict()
    if pcfg.get("quick_gelu"):
        d["clip"]["quick_gelu"] = True
    for key, field_name in (("mean", "image_mean"), ("std", "image_std")):
        if pcfg.get(key) and len(pcfg[key]) == 3:
            d[field_name] = [float(v) for v in pcfg[key]]
    return ModelConfig.from_dict(d)


def _openclip_hub(repo: str) -> OpenClipSource:
    """An open_clip repo on the hub: open_clip_config.json + open_clip_model.safetensors (or the .bin)."""
    if not is_hub_id(repo):
        raise ConfigError(f"bad hub id {repo!r} in openclip:hf-hub:{repo}: expected org/name")
    folder = hf_snapshot(repo, allow=(OPENCLIP_CONFIG, OPENCLIP_WEIGHTS[0]))
    if not (folder / OPENCLIP_WEIGHTS[0]).is_file() and not hf_offline():
        folder = hf_snapshot(repo, allow=(OPENCLIP_WEIGHTS[1],))
    if not (folder / OPENCLIP_CONFIG).is_file():
        raise _missing(f"open_clip model hf-hub:{repo} ({OPENCLIP_CONFIG})", repo)
    weights = next((folder / f for f in OPENCLIP_WEIGHTS if (folder / f).is_file()), None)
    if weights is None:
        raise _missing(f"open_clip model hf-hub:{repo} (its weights)", repo, f" {OPENCLIP_WEIGHTS[0]}")
    return OpenClipSource(weights, None, f"open_clip hf-hub:{repo}")
