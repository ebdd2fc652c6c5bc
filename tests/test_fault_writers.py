"""Concurrent writers: `mmpt ingest --append` processes racing each other, an embedding column write racing
an append, readers reading while writers commit, the lock's wait and timeout, and `data verify` on
duplicate ids. After every round: the dataset opens, ids are unique, the row count is what was accepted,
previous versions read back unchanged and `data verify` passes."""

from __future__ import annotations

import threading
import time

import fault_tally
import lance
import numpy as np
import pyarrow as pa
import pytest
from fault_support import duplicates, error_line, hooked, intact, mmpt, snapshot, start, text_manifest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmpt.cli import main
from mmpt.embed.columns import read_embeddings, write_embeddings
from mmpt.errors import DataError
from mmpt.store import ingest as ingest_module
from mmpt.store.ingest import ingest
from mmpt.store.lock import lock_path, write_lock
from mmpt.store.write import rows_to_batch

SEED_ROWS = 100
ROWS_TO_BATCH = ingest_module.rows_to_batch  # the real one (the property test gates it per example)


def seeded(tmp_path, n: int = SEED_ROWS) -> str:
    out = tmp_path / "w.lance"
    ingest(text_manifest(tmp_path / "seed.csv", [f"s{i:04d}" for i in range(n)]), out, quiet=True)
    return str(out)


def verify_passes(uri: str, capsys) -> bool:
    try:
        main(["data", "verify", uri])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr()
    return code == 0 and "ids unique" in out.out


class Reader(threading.Thread):
    """Reads the newest version over and over while writers commit; records what each version held."""

    def __init__(self, uri: str) -> None:
        super().__init__(daemon=True)
        self.uri, self.stop, self.seen, self.problems = uri, threading.Event(), {}, []

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                version, ids = snapshot(self.uri)
            except Exception as exc:  # noqa: BLE001 - a reader must never fail while writers commit
                self.problems.append(f"read failed: {exc}")
                continue
            if duplicates(ids):
                self.problems.append(f"v{version}: duplicate ids")
            if self.seen.setdefault(version, len(ids)) != len(ids):
                self.problems.append(f"v{version} changed its row count")
            time.sleep(0.01)


def test_racing_appends_keep_ids_unique(tmp_path, capsys):
    """Three `mmpt ingest --append` at once per round: two with overlapping ids, one disjoint.

    All three plan against the same version (a barrier holds them at their first batch until all got there),
    which is exactly the race that gave 1,700 rows with 1,100 distinct ids before the write lock.
    """
    uri = seeded(tmp_path)
    history = dict([snapshot(uri)])
    expected = SEED_ROWS
    rounds, violations = 3, 0
    reader = Reader(uri)
    reader.start()
    for r in range(rounds):
        barrier = tmp_path / f"barrier{r}"
        barrier.mkdir()
        overlap_a = [f"r{r}-{i:04d}" for i in range(0, 200)]
        overlap_b = [f"r{r}-{i:04d}" for i in range(100, 300)]  # 100 ids in common with a
        disjoint = [f"d{r}-{i:04d}" for i in range(150)]
        inputs = {"a": overlap_a, "b": overlap_b, "c": disjoint}
        procs = {}
        for name, ids in inputs.items():
            manifest = text_manifest(tmp_path / f"{name}{r}.csv", ids)
            args = [
                "ingest",
                manifest,
                "--out",
                uri,
                "--append",
                "-q",
                "--batch-rows",
                "50",
                "--workers",
                "1",
            ]
            procs[name] = start(hooked(args, barrier, parties=3))
        results = {name: (p.wait(timeout=180), *p.communicate()) for name, p in procs.items()}
        won = [name for name, (code, _, _) in results.items() if code == 0]
        lost = [name for name in results if name not in won]
        # the disjoint writer always commits; exactly one of the overlapping two does
        assert "c" in won and sorted(lost) in (["a"], ["b"]), results
        for name in lost:
            line = error_line(results[name][2])
            assert "were added to" in line and "by another writer" in line and "nothing was written" in line
        expected += sum(len(inputs[name]) for name in won)
        version, ids = snapshot(uri)
        violations += bool(duplicates(ids)) + (len(ids) != expected) + len(intact(uri, history))
        assert not duplicates(ids) and len(ids) == expected
        assert intact(uri, history) == []
        assert verify_passes(uri, capsys)
        history[version] = ids
        for older in range(min(history), version):
            history.setdefault(older, snapshot(uri, older)[1])
    reader.stop.set()
    reader.join(timeout=10)
    assert reader.problems == [] and len(reader.seen) >= 2
    # the losers' data files were removed: every data file belongs to some version
    referenced = {
        d.path for v in history for f in lance.dataset(uri, version=v).get_fragments() for d in f.data_files()
    }
    on_disk = {p.name for p in (tmp_path / "w.lance" / "data").glob("*.lance")}
    assert on_disk == referenced
    fault_tally.record("writer_rounds", rounds, violations + len(reader.problems))


def test_embedding_write_racing_an_append(tmp_path, capsys):
    """An embedding column written while an append is between its plan and its commit, and an append that
    must wait for a column write holding the lock: both land, nothing is lost."""
    uri = seeded(tmp_path)
    history = dict([snapshot(uri)])
    ids = [f"s{i:04d}" for i in range(SEED_ROWS)]
    vectors = np.random.default_rng(0).standard_normal((SEED_ROWS, 8)).astype(np.float32)

    # 1. the append plans, the column is written, the append commits on top of it
    barrier = tmp_path / "b1"
    barrier.mkdir()
    manifest = text_manifest(tmp_path / "more.csv", [f"m{i:04d}" for i in range(120)])
    args = ["ingest", manifest, "--out", uri, "--append", "-q", "--batch-rows", "40", "--workers", "1"]
    proc = start(hooked(args, barrier, parties=2, slow=0.2))
    while not list(barrier.glob("*.ready")):
        time.sleep(0.01)
    write_embeddings(uri, "r1", "text", ids, vectors)
    (barrier / "test.ready").touch()  # let the append go on
    code, (_, err) = proc.wait(timeout=120), proc.communicate()
    assert code == 0, err
    version, now = snapshot(uri)
    assert sorted(now) == sorted(ids + [f"m{i:04d}" for i in range(120)])
    got_ids, got = read_embeddings(uri, "r1", "text")
    order = {key: i for i, key in enumerate(got_ids)}
    assert sorted(got_ids) == ids  # the appended rows have no vector, the seeded ones theirs
    np.testing.assert_array_equal(got[[order[i] for i in ids]], vectors)
    assert intact(uri, history) == []
    history[version] = now

    # 2. a column write holds the lock; an append reaching its commit meanwhile waits for it, then lands
    manifest = text_manifest(tmp_path / "late.csv", [f"l{i:04d}" for i in range(60)])
    args = ["ingest", manifest, "--out", uri, "--append", "-q", "--workers", "1"]
    with write_lock(uri, "a slow column write"):
        proc = start(hooked(args))
        time.sleep(2.5)  # the child starts, plans and blocks on the lock (says so after a second)
        assert proc.poll() is None
        write_embeddings(uri, "r2", "text", ids, vectors)  # re-entrant in this thread
    code, (_, err) = proc.wait(timeout=120), proc.communicate()
    assert code == 0, err
    assert "waiting for another writer" in err and "a slow column write" in err
    version, now = snapshot(uri)
    assert len(now) == SEED_ROWS + 180 and not duplicates(now)
    assert sorted(read_embeddings(uri, "r2", "text")[0]) == ids
    assert intact(uri, history) == []
    assert verify_passes(uri, capsys)
    fault_tally.record("writer_rounds", 2)


def test_a_writer_that_cannot_get_the_lock_fails_in_one_line_and_writes_nothing(tmp_path):
    uri = seeded(tmp_path)
    before = snapshot(uri)
    files = sorted((tmp_path / "w.lance" / "data").iterdir())
    manifest = text_manifest(tmp_path / "more.csv", [f"m{i}" for i in range(30)])
    with write_lock(uri, "a long repair"):
        result = mmpt("ingest", manifest, "--out", uri, "--append", "-q", lock_timeout=1)
    assert result.returncode == 1
    line = error_line(result.stderr)
    assert "another writer" in line and "a long repair" in line and "MMPT_LOCK_TIMEOUT" in line
    assert snapshot(uri) == before
    assert sorted((tmp_path / "w.lance" / "data").iterdir()) == files  # its data files were removed
    assert lock_path(uri).name == "w.lance.lock"
    fault_tally.record("writer_rounds", 1)


def test_verify_finds_duplicate_ids_and_repair_restores_the_version_before(tmp_path, capsys):
    uri = seeded(tmp_path, 20)
    good = snapshot(uri)
    # a writer outside mmpt (raw Lance, no lock, no check) appends ids that are already there
    schema = lance.dataset(uri).schema
    rows = [{"id": f"s{i:04d}", "text": "again", "split": "train"} for i in range(5)]
    lance.write_dataset(
        pa.RecordBatchReader.from_batches(schema, [rows_to_batch(rows, schema)]), uri, mode="append"
    )
    result = mmpt("data", "verify", uri)
    assert result.returncode == 1
    line = error_line(result.stderr)
    assert "5 id(s) occur more than once" in line and "'s0000' x2" in line and "--repair" in line
    result = mmpt("data", "verify", "--repair", uri)
    assert result.returncode == 0, result.stderr
    assert f"restored {uri} to version {good[0]}" in result.stdout
    assert snapshot(uri)[1] == good[1] and verify_passes(uri, capsys)
    assert "nothing to repair" in mmpt("data", "verify", "--repair", uri).stdout
    fault_tally.record("corruptions", 1)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spans=st.lists(st.tuples(st.integers(0, 40), st.integers(1, 25)), min_size=2, max_size=3))
def test_racing_writers_property(tmp_path_factory, spans):
    """Writers (threads, each its own ingest) with random id ranges, all planned against the same version:
    the ones that commit hold pairwise disjoint ids, each refused one clashes with a committed one or the
    seed, and the dataset holds exactly the seed plus the committed rows."""
    tmp = tmp_path_factory.mktemp("prop")
    uri = seeded(tmp, 10)  # ids s0000..s0009
    inputs = [[f"s{i:04d}" if i < 10 else f"n{i:04d}" for i in range(lo, lo + n)] for lo, n in spans]
    inputs = [ids for ids in inputs if not set(ids) & {f"s{i:04d}" for i in range(10)}] or [["only"]]
    barrier = threading.Barrier(len(inputs), timeout=30)
    local = threading.local()

    def gated(rows, schema):
        if not getattr(local, "passed", False):
            local.passed = True
            barrier.wait()
        return ROWS_TO_BATCH(rows, schema)

    outcome: dict[int, str] = {}

    def write(k: int) -> None:
        frame = pa.table({"id": inputs[k], "text": [f"t {i}" for i in inputs[k]]}).to_pandas()
        try:
            ingest(frame, uri, append=True, quiet=True, workers=1)
            outcome[k] = "ok"
        except DataError as exc:
            outcome[k] = str(exc)

    threads = [threading.Thread(target=write, args=(k,)) for k in range(len(inputs))]
    ingest_module.rows_to_batch = gated  # type: ignore[assignment]  # restored below, for every example
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    finally:
        ingest_module.rows_to_batch = ROWS_TO_BATCH
    committed = [set(inputs[k]) for k, v in outcome.items() if v == "ok"]
    refused = [k for k, v in outcome.items() if v != "ok"]
    ids = snapshot(uri)[1]
    violations = 0
    for i, a in enumerate(committed):
        violations += sum(bool(a & b) for b in committed[i + 1 :])
    for k in refused:
        violations += not any(set(inputs[k]) & c for c in committed) or "another writer" not in outcome[k]
    violations += bool(duplicates(ids)) + (len(ids) != 10 + sum(len(c) for c in committed))
    fault_tally.record("writer_rounds", 1, violations)
    assert violations == 0, (inputs, outcome)


def test_object_store_uris_have_no_lock_file():
    assert lock_path("s3://bucket/corpus.lance") is None
    with write_lock("s3://bucket/corpus.lance", "anything"):
        pass  # a no-op there (documented in mmpt.store.lock)


def test_lock_timeout_must_be_a_number(tmp_path, monkeypatch):
    monkeypatch.setenv("MMPT_LOCK_TIMEOUT", "soon")
    with pytest.raises(DataError, match="MMPT_LOCK_TIMEOUT must be a number"):
        with write_lock(tmp_path / "x.lance", "test"):
            pass
