"""Several captions and labels per row: `texts` / `labels` ingest, per-epoch caption sampling (deterministic and
resume-exact), the any-caption retrieval metric on a hand-checked case, and multi-label mAP."""

from __future__ import annotations

import csv
import json

import lance
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from mmpt.data.captions import caption_index, pick_captions
from mmpt.data.loader import build_loader
from mmpt.errors import DataError
from mmpt.eval.multi_caption import caption_retrieval, item_to_text_ranks, text_to_item_ranks
from mmpt.eval.multilabel import multilabel_zero_shot
from mmpt.eval.report import evaluate_embeddings, format_report
from mmpt.eval.retrieval import retrieval
from mmpt.models.spec import InputSpec
from mmpt.models.tokenizer import build_tokenizer
from mmpt.store.ingest import ingest
from mmpt.store.lists import BadList, string_list
from mmpt.store.manifest import ColumnNames, dataframe_source

SPEC = InputSpec(context_length=16)


# --- reading list cells --------------------------------------------------------------------------------


def test_list_cells_read_as_lists_of_strings():
    assert string_list('["a dog barks", "a dog", " "]') == ["a dog barks", "a dog"]
    assert string_list(["x", None, "y"]) == ["x", "y"]
    assert string_list(np.array(["x", "y"], dtype=object)) == ["x", "y"]
    assert string_list("just one caption") == ["just one caption"]
    assert string_list([1, "b"]) == ["1", "b"]  # numeric class ids name classes too
    assert string_list(None) is None and string_list("") is None and string_list("[]") is None
    assert string_list(float("nan")) is None
    with pytest.raises(BadList, match="not a valid JSON list"):
        string_list('["unclosed"')
    with pytest.raises(BadList, match="not only strings"):
        string_list([["nested"]])
    with pytest.raises(BadList, match="not a list"):
        string_list(3.5)


def _rows(uri) -> list[dict]:
    table = lance.dataset(str(uri)).to_table(columns=["id", "text", "label", "texts", "labels"])
    return sorted(table.to_pylist(), key=lambda r: r["id"])


def test_csv_jsonl_parquet_and_dataframe_sources_give_texts_and_labels(tmp_path):
    with (tmp_path / "m.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "captions", "labels", "fold"])
        w.writerow(["a", json.dumps(["a dog barks", "a dog"]), json.dumps(["Dog", "Bark"]), 1])
        w.writerow(["b", "a cat meows", "Cat", 2])  # a plain cell is a one-element list
        w.writerow(["c", '["unclosed', "", 3])  # rejected, with the reason
    result = ingest(tmp_path / "m.csv", tmp_path / "d.lance", quiet=True)
    assert result.written == 2
    assert (
        result.rejected[0]["kind"] == "bad_texts" and "not a valid JSON list" in result.rejected[0]["reason"]
    )
    schema = lance.dataset(str(tmp_path / "d.lance")).schema
    assert str(schema.field("texts").type) == "list<item: string>" and "captions" not in schema.names
    assert _rows(tmp_path / "d.lance") == [
        {
            "id": "a",
            "text": "a dog barks",
            "label": "Dog",
            "texts": ["a dog barks", "a dog"],
            "labels": ["Dog", "Bark"],
        },
        {"id": "b", "text": "a cat meows", "label": "Cat", "texts": ["a cat meows"], "labels": ["Cat"]},
    ]

    # JSON lines and Parquet hold real lists; they append to the same dataset
    with (tmp_path / "m.jsonl").open("w") as f:
        f.write(json.dumps({"id": "j", "texts": ["j one", "j two"], "labels": ["J"], "fold": 4}) + "\n")
    ingest(tmp_path / "m.jsonl", tmp_path / "d.lance", append=True, quiet=True)
    pd.DataFrame({"id": ["p"], "texts": [["p one"]], "labels": [["P", "Q"]], "fold": [5]}).to_parquet(
        tmp_path / "m.parquet"
    )
    ingest(tmp_path / "m.parquet", tmp_path / "d.lance", append=True, quiet=True)
    rows = {r["id"]: r for r in _rows(tmp_path / "d.lance")}
    assert rows["j"]["texts"] == ["j one", "j two"] and rows["j"]["text"] == "j one"
    assert rows["p"]["labels"] == ["P", "Q"] and rows["p"]["label"] == "P"

    # a DataFrame: lists or numpy arrays; an explicit `text` / `label` is kept as given
    df = pd.DataFrame(
        {
            "id": ["x", "y"],
            "text": ["the given caption", None],
            "texts": [["first", "second"], np.array(["only"], dtype=object)],
            "label": [None, "Given"],
            "labels": [np.array(["L1", "L2"], dtype=object), None],
        }
    )
    ingest(df, tmp_path / "f.lance", quiet=True)
    assert _rows(tmp_path / "f.lance") == [
        {
            "id": "x",
            "text": "the given caption",
            "label": "L1",
            "texts": ["first", "second"],
            "labels": ["L1", "L2"],
        },
        {"id": "y", "text": "only", "label": "Given", "texts": ["only"], "labels": None},
    ]


def test_datasets_without_lists_keep_their_schema_and_appends_must_match(tmp_path):
    pd.DataFrame({"id": ["a"], "text": ["plain"]}).to_csv(tmp_path / "plain.csv", index=False)
    ingest(tmp_path / "plain.csv", tmp_path / "p.lance", quiet=True)
    assert "texts" not in lance.dataset(str(tmp_path / "p.lance")).schema.names
    with pytest.raises(DataError, match=r"new columns \['texts'\]"):
        ingest(pd.DataFrame({"id": ["b"], "texts": [["x"]]}), tmp_path / "p.lance", append=True, quiet=True)
    # with the labels role on another column, a free column named `labels` is kept as `meta_labels`
    src = pd.DataFrame({"id": ["c"], "text": ["t"], "tags": [["u", "v"]], "labels": ["not a list role"]})
    source = dataframe_source(src, ColumnNames(labels="tags"))
    assert "meta_labels" in source.metadata and source.metadata["labels"] == pa.list_(pa.string())


# --- caption sampling in training ----------------------------------------------------------------------


def test_caption_choice_is_a_pure_function_of_seed_epoch_and_row():
    picks = [caption_index(7, e, "row-1", 5) for e in range(200)]
    assert picks == [caption_index(7, e, "row-1", 5) for e in range(200)]  # deterministic
    assert set(picks) == set(range(5))  # every caption is seen over epochs
    assert max(np.bincount(picks)) < 60  # roughly uniform (40 expected per caption)
    assert picks != [caption_index(8, e, "row-1", 5) for e in range(200)]  # the seed matters
    assert picks != [caption_index(7, e, "row-2", 5) for e in range(200)]  # so does the row
    assert caption_index(7, 3, "row-1", 1) == 0
    assert pick_captions(0, 0, ["a", "b"], ["single", None], [None, ["only"]]) == ["single", "only"]
    with pytest.raises(ValueError):
        caption_index(0, 0, "r", 0)


@pytest.fixture(scope="module")
def captioned(tmp_path_factory) -> str:
    """24 text rows, most with 4 captions, some with only `text`."""
    root = tmp_path_factory.mktemp("captioned")
    df = pd.DataFrame(
        {
            "id": [f"r{i:02d}" for i in range(24)],
            "text": [f"plain caption {i}" for i in range(24)],
            "texts": [None if i % 6 == 0 else [f"caption {i} take {k}" for k in range(4)] for i in range(24)],
            "split": ["train"] * 24,
        }
    )
    ingest(df, root / "c.lance", quiet=True)
    return str(root / "c.lance")


def _texts_of(batch: dict, lookup: dict[str, str | None]) -> list[str]:
    """Which caption each row of a batch shows, read back from its tokens."""
    tokens = batch["text"]
    return [lookup[tuple(t.tolist())] for t in tokens]


def test_training_batches_draw_captions_per_epoch_and_resume_exactly(captioned):
    ds = lance.dataset(captioned)
    table = ds.to_table(columns=["id", "text", "texts"]).to_pydict()
    every = {t for one, many in zip(table["text"], table["texts"], strict=True) for t in [one, *(many or [])]}
    tokenize = build_tokenizer(SPEC)
    lookup = {tuple(tokenize([t])[0].tolist()): t for t in every}

    def epoch_texts(loader, epoch, start=0):
        loader.set_epoch(epoch)
        loader.set_start_batch(start)
        return [(b["ids"], _texts_of(b, lookup)) for b in loader]

    loader = build_loader(ds, SPEC, ["text"], "train", 4, train=True, seed=3)
    first = epoch_texts(loader, 0)
    second = epoch_texts(loader, 1)
    for ids, texts in first:
        expected = pick_captions(3, 0, ids, *_columns(table, ids))
        assert texts == expected
    shown = {i: t for ids, texts in first for i, t in zip(ids, texts, strict=True)}
    later = {i: t for ids, texts in second for i, t in zip(ids, texts, strict=True)}
    assert any(shown[i] != later[i] for i in shown)  # another epoch, other captions
    assert all(shown[i] == f"plain caption {int(i[1:])}" for i in shown if int(i[1:]) % 6 == 0)

    # a fresh loader resuming at batch 3 of epoch 1 builds exactly the batches the first run built
    resumed = build_loader(ds, SPEC, ["text"], "train", 4, train=True, seed=3)
    assert epoch_texts(resumed, 1, start=3) == second[3:]
    again = build_loader(ds, SPEC, ["text"], "train", 4, train=True, seed=3)
    assert epoch_texts(again, 0) == first  # and the same seed gives the same run

    # evaluation batches read `text`
    plain = build_loader(ds, SPEC, ["text"], "train", 8, train=False)
    for batch in plain:
        assert _texts_of(batch, lookup) == [f"plain caption {int(i[1:])}" for i in batch["ids"]]


def _columns(table: dict, ids: list[str]) -> tuple[list, list]:
    where = {rid: k for k, rid in enumerate(table["id"])}
    return [table["text"][where[i]] for i in ids], [table["texts"][where[i]] for i in ids]


# --- retrieval with several captions per item: a hand-checked case -------------------------------------

# Similarity of each caption (rows a1 a2 b1 b2 c1 c2) to each item (columns A B C); with the items as the
# unit vectors, these are exactly the scores both directions use.
SIMS = np.array(
    [
        [0.25, 0.1, 0.0],  # a1: own A first -> rank 1
        [0.2, 0.5, 0.1],  # a2: B above A -> rank 2
        [0.3, 0.3, 0.0],  # b1: A ties B, ties count against the query -> rank 2
        [0.0, 0.8, 0.1],  # b2: rank 1
        [0.4, 0.6, 0.2],  # c1: A and B above C -> rank 3
        [0.0, 0.0, 0.05],  # c2: rank 1
    ],
    dtype=np.float32,
)
OWNERS = ["A", "A", "B", "B", "C", "C"]


def test_any_caption_retrieval_on_a_hand_checked_case():
    items = np.eye(3, dtype=np.float32)
    assert text_to_item_ranks(SIMS, OWNERS, items, ["A", "B", "C"]).tolist() == [1, 2, 2, 1, 3, 1]
    # Item A sees a1 .25 a2 .2 b1 .3 b2 0 c1 .4 c2 0: b1 and c1 beat both its captions -> positions 3, 4.
    # Item B: b2 .8 is first; b1 .3 has a2 .5 and c1 .6 above -> 4. Item C: c1 .2 first; c2 .05 under
    # a2 .1 and b2 .1 -> 4.
    positions = item_to_text_ranks(items, ["A", "B", "C"], SIMS, OWNERS)
    assert [p.tolist() for p in positions] == [[3, 4], [1, 4], [1, 4]]

    out = caption_retrieval(items, ["A", "B", "C"], SIMS, OWNERS, item="audio")
    t2a, a2t = out["text_to_audio"], out["audio_to_text"]
    assert t2a["r@1"] == pytest.approx(3 / 6) and t2a["r@5"] == 1.0 and t2a["median_rank"] == 1.5
    # AP@10 with one relevant item is 1/rank: (1 + 1/2 + 1/2 + 1 + 1/3 + 1) / 6
    assert t2a["mAP@10"] == pytest.approx((4 + 1 / 3) / 6)
    assert t2a["n_queries"] == 6 and t2a["n_targets"] == 3
    assert a2t["r@1"] == pytest.approx(2 / 3) and a2t["r@5"] == 1.0
    # AP@10 with two relevant captions: A (1/3 + 2/4) / 2, B and C (1/1 + 2/4) / 2
    assert a2t["mAP@10"] == pytest.approx(((1 / 3 + 2 / 4) / 2 + 0.75 + 0.75) / 3)
    assert a2t["n_queries"] == 3 and a2t["n_targets"] == 6


def test_one_caption_per_item_matches_plain_retrieval():
    rng = np.random.default_rng(0)
    items, texts = rng.standard_normal((20, 8)), rng.standard_normal((20, 8))
    ids = [f"i{k}" for k in range(20)]
    out = caption_retrieval(items, ids, texts, ids, item="image")
    plain_t2i = retrieval(texts, ids, items, ids)
    plain_i2t = retrieval(items, ids, texts, ids)
    for k in ("r@1", "r@5", "r@10", "median_rank"):
        assert out["text_to_image"][k] == pytest.approx(plain_t2i[k])
        assert out["image_to_text"][k] == pytest.approx(plain_i2t[k])


def test_caption_retrieval_refuses_orphans():
    with pytest.raises(DataError, match="not among the targets"):
        caption_retrieval(np.eye(2), ["A", "B"], np.eye(2), ["A", "Z"], item="audio")
    with pytest.raises(DataError, match="has no caption"):
        caption_retrieval(np.eye(2), ["A", "B"], np.eye(2), ["A", "A"], item="audio")


# --- multi-label zero-shot -----------------------------------------------------------------------------


def test_multilabel_map_hand_checked_and_in_the_report():
    emb = np.array([[0.9, 0.1, 0.0], [0.5, 0.6, 0.0], [0.2, 0.05, 0.0]], dtype=np.float32)
    label_sets = [["x"], ["x", "y"], ["y"]]
    out = multilabel_zero_shot(emb, label_sets, ["x", "y", "z"], np.eye(3, dtype=np.float32))
    # x: rows ranked 1, 2, 3 with truth +, +, - -> AP 1. y: ranked row 2 (+), row 1 (-), row 3 (+) -> AP
    # (1/1 + 2/3) / 2. z has no positive row and takes no part.
    assert out["ap_per_class"] == pytest.approx({"x": 1.0, "y": (1 + 2 / 3) / 2})
    assert out["mAP"] == pytest.approx((1 + (1 + 2 / 3) / 2) / 2)
    assert out["n_multilabel_rows"] == 3 and out["n_multilabel_classes"] == 2

    names = {"x": [1.0, 0.0, 0.0], "y": [0.0, 1.0, 0.0]}
    report = evaluate_embeddings(
        {"audio": (["r1", "r2", "r3"], ["x", "x", "y"], emb)},
        lambda texts: np.array([names[t] for t in texts]),
        label_sets={"audio": label_sets},
    )
    assert report["zero_shot"]["audio"]["mAP"] == pytest.approx(out["mAP"])
    assert "accuracy" in report["zero_shot"]["audio"]  # single-label figures on `label` stay
    assert "zero-shot     audio          mAP 0.917" in format_report(report)


def test_cli_names_the_list_columns(tmp_path):
    import subprocess
    import sys

    with (tmp_path / "m.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "all_captions", "tags"])
        w.writerow(["a", json.dumps(["a dog barks", "a dog"]), json.dumps(["Dog", "Bark"])])
        w.writerow(["b", json.dumps(["a cat meows"]), json.dumps(["Cat"])])
    done = subprocess.run(
        [sys.executable, "-m", "mmpt", "ingest", str(tmp_path / "m.csv"), "--out", str(tmp_path / "d.lance")]
        + ["--texts-col", "all_captions", "--labels-col", "tags", "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = _rows(tmp_path / "d.lance")
    assert [r["texts"] for r in rows] == [["a dog barks", "a dog"], ["a cat meows"]]
    assert [r["labels"] for r in rows] == [["Dog", "Bark"], ["Cat"]]
    assert [r["text"] for r in rows] == ["a dog barks", "a cat meows"]
