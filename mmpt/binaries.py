"""The binary-coupled torch trio: its exact pins, and a load failure turned into one line with the fix.

torchaudio and torchvision are compiled against one torch release; a mismatched pair installs fine and
fails at load (torchaudio 2.11.1 next to torch 2.11.0: `undefined symbol ...`). Kept light (no torch import at
module level) so the CLI and any layer can use it.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md

from mmpt.errors import MmptError

# The binary-coupled trio: wheels built against each other, pinned exactly in pyproject.toml.
PINS = {"torch": "2.11.0", "torchvision": "0.26.0", "torchaudio": "2.11.0"}
PIN_FIX = "pip install " + " ".join(f"{name}=={version}" for name, version in PINS.items())
_LOAD_MARKERS = (
    "could not load this library",
    "undefined symbol",
    "compiled with different cuda versions",
    "libtorchaudio",
    "libtorchvision",
    "libc10",
    "cannot open shared object file",
)


class BrokenEnvironment(MmptError):
    """A compiled dependency does not load here; the message names the mismatch and the fix."""


def version(dist: str) -> str | None:
    """The installed version of a distribution, without importing it."""
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def pin_mismatches() -> list[str]:
    """One line per installed member of the torch trio that differs from its exact pin."""
    out = []
    for name, pinned in PINS.items():
        got = version(name)
        if got is None:
            out.append(f"{name} is not installed; fix: {PIN_FIX}")
        elif got.split("+")[0] != pinned:
            out.append(
                f"{name} {got} is installed but mmpt needs {name}=={pinned} (built against each other); "
                f"fix: {PIN_FIX}"
            )
    return out


def diagnose_load_error(exc: BaseException) -> str | None:
    """A one-line explanation with the fix when `exc` is a compiled library failing to load, else None."""
    failure = load_failure(exc)
    if failure is None:
        return None
    mismatch = "; ".join(p.split("; fix:")[0] for p in pin_mismatches()) or f"installed: {_trio_versions()}"
    return f"{failure}: {mismatch}; fix: {PIN_FIX}; run `mmpt doctor` for details"


def load_failure(exc: BaseException) -> str | None:
    """ "<library>'s compiled library does not load (undefined symbol S)" when `exc` is such a failure, else None."""
    chain: list[str] = []
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        chain.append(f"{type(link).__name__}: {link}")
        link = link.__cause__ or link.__context__
    text = " | ".join(chain)
    if not any(marker in text.lower() for marker in _LOAD_MARKERS):
        return None
    library = next((name for name in ("torchaudio", "torchvision") if name in text.lower()), "torch")
    symbol = next(
        (
            part.split("undefined symbol:")[1].strip().split()[0]
            for part in chain
            if "undefined symbol:" in part
        ),
        None,
    )
    why = f" (undefined symbol {symbol})" if symbol else ""
    return f"{library}'s compiled library does not load{why}"


def require_compiled() -> None:
    """Load torch, torchvision and torchaudio's compiled libraries now, so a broken install fails before any work.

    Raises BrokenEnvironment (one line, with the fix) instead of a traceback from deep inside a verb.
    """
    for module in ("torch", "torchvision", "torchaudio"):
        try:
            importlib.import_module(module)
        except (OSError, ImportError, RuntimeError) as exc:
            line = diagnose_load_error(exc)
            if line is None:
                raise
            raise BrokenEnvironment(line) from None


def _trio_versions() -> str:
    return ", ".join(f"{name} {version(name)}" for name in PINS)
