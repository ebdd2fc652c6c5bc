"""Helpers of the writer / kill / corruption fault tests: text-only manifests, `mmpt` subprocesses with hooks
(a start barrier, markers printed at chosen points), dataset snapshots and the invariants checked after each
fault."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import lance

REPO = Path(__file__).resolve().parents[1]

# Runs `mmpt ARGS...` with hooks: every writer waits at its first write batch (after it planned against the
# dataset) until all `parties` writers got there, so their plans overlap as in a real race; with `slow`, each
# batch sleeps that long; markers ("batch", "commit", "committed") are printed as the write gets there.
HOOKED_MMPT = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    barrier, parties, slow = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    import mmpt.store.ingest as ingest_module
    import mmpt.store.write as write_module

    real_batch, state = ingest_module.rows_to_batch, {"first": True}
    real_commit = getattr(write_module, "_commit", None)

    def gated(rows, schema):
        if state["first"] and barrier != "-":
            state["first"] = False
            Path(barrier, f"{os.getpid()}.ready").touch()
            deadline = time.monotonic() + 60
            while len(list(Path(barrier).glob("*.ready"))) < parties and time.monotonic() < deadline:
                time.sleep(0.01)
        print("batch", flush=True)
        if slow:
            time.sleep(slow)
        return real_batch(rows, schema)

    def marked_commit(*args, **kwargs):
        print("commit", flush=True)
        if slow:
            time.sleep(slow)
        result = real_commit(*args, **kwargs)
        print("committed", flush=True)
        if slow:
            time.sleep(slow)
        return result

    ingest_module.rows_to_batch = gated
    if real_commit is not None:  # (absent in mmpt before the write lock: lets the same hooks run old code)
        write_module._commit = marked_commit
    from mmpt.cli import main
    main(sys.argv[4:])
""")


def env() -> dict[str, str]:
    """The environment of an `mmpt` child: this checkout first on the path, one thread, short lock wait."""
    out = dict(os.environ)
    out["PYTHONPATH"] = str(REPO) + os.pathsep + out.get("PYTHONPATH", "")
    out.setdefault("OMP_NUM_THREADS", "1")
    out.setdefault("MMPT_LOCK_TIMEOUT", "60")
    return out


def hooked(args: list[str], barrier: Path | str = "-", parties: int = 1, slow: float = 0.0) -> list[str]:
    """The argv of `mmpt ARGS` run with the hooks of HOOKED_MMPT."""
    return [sys.executable, "-c", HOOKED_MMPT, str(barrier), str(parties), str(slow), *map(str, args)]


def start(argv: list[str], **kwargs) -> subprocess.Popen:
    """Start a child in its own session (so a kill reaches only it), stdout/stderr as text pipes."""
    return subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
        start_new_session=True,
        **kwargs,
    )


def mmpt(
    *args: object, timeout: float = 300, lock_timeout: float | None = None
) -> subprocess.CompletedProcess:
    """Run `python -m mmpt ARGS` to its end (with MMPT_LOCK_TIMEOUT=`lock_timeout` if given)."""
    environment = env()
    if lock_timeout is not None:
        environment["MMPT_LOCK_TIMEOUT"] = str(lock_timeout)
    return subprocess.run(
        [sys.executable, "-m", "mmpt", *map(str, args)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=timeout,
    )


def text_manifest(path: Path, ids: list[str], label: str = "x") -> Path:
    """A CSV manifest of text-only rows (`caption <id>`), fast to ingest."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text", "label"])
        for row_id in ids:
            writer.writerow([row_id, f"caption {row_id}", label])
    return path


def snapshot(uri: str | Path, version: int | None = None) -> tuple[int, list[str]]:
    """(version, ids in scan order) of the dataset at `version` (default: latest)."""
    ds = lance.dataset(str(uri), version=version)
    return ds.version, ds.to_table(columns=["id"])["id"].to_pylist()


def duplicates(ids: list[str]) -> dict[str, int]:
    """Ids occurring more than once, with their counts."""
    return {key: n for key, n in Counter(ids).items() if n > 1}


def intact(uri: str | Path, history: dict[int, list[str]]) -> list[str]:
    """Versions in `history` whose ids no longer read back identically (an empty list when all are intact)."""
    bad = []
    for version, ids in history.items():
        try:
            if snapshot(uri, version)[1] != ids:
                bad.append(f"v{version} changed")
        except Exception as exc:  # noqa: BLE001 - a version that no longer opens is a violation
            bad.append(f"v{version} unreadable: {exc}")
    return bad


def error_line(stderr: str) -> str:
    """The last line of a child's stderr, checked to be mmpt's one-line error (no traceback, no panic)."""
    assert "Traceback" not in stderr and "panicked" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert lines and lines[-1].startswith("error: "), stderr
    return lines[-1]


# Runs `mmpt ARGS...` (an embed) printing "staged" after each durable chunk, "commit" before and "committed"
# after each column's commit into the dataset, so a test can kill it at those points.
HOOKED_EMBED = textwrap.dedent("""
    import sys
    from mmpt.embed.export import EmbeddingWriter

    real_add, real_commit = EmbeddingWriter.add, EmbeddingWriter.commit

    def add(self, ids, vectors):
        real_add(self, ids, vectors)
        print("staged", flush=True)

    def commit(self, **kwargs):
        print("commit", flush=True)
        version = real_commit(self, **kwargs)
        print("committed", flush=True)
        return version

    EmbeddingWriter.add, EmbeddingWriter.commit = add, commit
    from mmpt.cli import main
    main(sys.argv[1:])
""")


def kill_at(proc: subprocess.Popen, marker: str | None, nth: int = 1, after_s: float | None = None) -> str:
    """SIGKILL `proc` when it printed `marker` for the `nth` time, or `after_s` seconds after it started;
    returns what happened ("killed at ...", or "finished" when it ended first)."""
    import signal
    import threading
    import time

    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    started = time.monotonic()
    while proc.poll() is None:
        hit = marker is not None and sum(line.strip() == marker for line in list(lines)) >= nth
        late = after_s is not None and time.monotonic() - started >= after_s
        if hit or late:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            return f"killed at {marker} #{nth}" if hit else f"killed after {after_s:.2f} s"
        if time.monotonic() - started > 300:
            os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError(f"no {marker!r} within 300 s: {lines[-5:]}")
        time.sleep(0.005)
    return "finished"
