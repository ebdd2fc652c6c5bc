"""DatasetPanel: the `data info` figures, filters, a paged grid of samples and the last ingest's bad rows."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ipywidgets as W
import numpy as np

from mmpt.explore import RowBrowser
from mmpt.notebook import html as H

if TYPE_CHECKING:
    from mmpt.store.dataset import MmptDataset

ANY = RowBrowser.ANY


class DatasetPanel:
    """A view of one dataset; `filter(...)` and `page(...)` set (and return self), called bare they read.

    Filtering, paging and reading cards are the core's `mmpt.explore.RowBrowser` (`self.browser`); this only
    shows what it returns.
    """

    def __init__(self, dataset: MmptDataset | str | Path, page_size: int = 12) -> None:
        self.browser = RowBrowser(dataset)
        self.dataset = self.browser.dataset
        self.page_size = page_size
        self._positions = np.arange(0)
        self._page = 0
        self.stats = self.dataset.stats()
        self.report = self.dataset.ingest_report()

        self.info = W.HTML(self._stats_html()).add_class("mmpt-dataset-info")
        self.split_w = W.Dropdown(options=[ANY, *self.browser.choices("split")], description="split")
        self.label_w = W.Dropdown(options=[ANY, *self.browser.choices("label")], description="label")
        self.modality_w = W.Dropdown(options=[ANY, *RowBrowser.MODALITIES], description="has")
        self.text_w = W.Text(
            placeholder="text or id contains...", description="match", continuous_update=False
        )
        for w in (self.split_w, self.label_w, self.modality_w, self.text_w):
            w.layout.width = "240px"
            w.observe(self._on_filter, names="value")
        self.prev_w = W.Button(description="◀", layout=W.Layout(width="40px"))
        self.next_w = W.Button(description="▶", layout=W.Layout(width="40px"))
        self.prev_w.on_click(lambda _: self.page(self._page - 1))
        self.next_w.on_click(lambda _: self.page(self._page + 1))
        self.page_w = W.Label().add_class("mmpt-page")
        self.grid_w = W.HTML().add_class("mmpt-dataset-grid")
        self.report_w = W.HTML(self._report_html()).add_class("mmpt-dataset-report")
        filters = W.HBox(
            [self.split_w, self.label_w, self.modality_w, self.text_w], layout=W.Layout(flex_flow="row wrap")
        )
        browse = W.VBox([filters, W.HBox([self.prev_w, self.page_w, self.next_w]), self.grid_w])
        tabs = W.Tab(children=[browse, self.info, self.report_w])
        for i, name in enumerate(("samples", "data info", "bad rows")):
            tabs.set_title(i, name)
        self.widget = W.VBox([tabs]).add_class("mmpt-dataset-panel")
        self._refresh()

    # --- facade ------------------------------------------------------------------------------------
    def filter(
        self,
        split: str | None = None,
        label: str | None = None,
        modality: str | None = None,
        text: str | None = None,
    ) -> DatasetPanel | dict[str, str | None]:
        """Set the filters (None leaves one as it is; '(any)' clears it), or read them when called bare."""
        if split is label is modality is text is None:
            return {
                "split": self.split_w.value,
                "label": self.label_w.value,
                "modality": self.modality_w.value,
                "text": self.text_w.value,
            }
        with self._held():
            for w, v in (
                (self.split_w, split),
                (self.label_w, label),
                (self.modality_w, modality),
                (self.text_w, text),
            ):
                if v is not None:
                    w.value = v
        self._refresh()
        return self

    def page(self, number: int | None = None) -> DatasetPanel | int:
        """Show page `number` (0-based, clamped), or read the current page when called bare."""
        if number is None:
            return self._page
        self._render_page(number)
        return self

    @property
    def pages(self) -> int:
        """Number of pages of the current filter."""
        return self.browser.pages(len(self._positions), self.page_size)

    def positions(self) -> np.ndarray:
        """Row positions matching the current filters."""
        return self._positions

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any] | None:
        return self.widget._repr_mimebundle_(**kwargs)

    # --- view --------------------------------------------------------------------------------------
    _holding = False

    @contextmanager
    def _held(self) -> Iterator[None]:
        """Mute the filter observers while several filters change at once (one refresh, not four)."""
        self._holding = True
        try:
            yield
        finally:
            self._holding = False

    def _on_filter(self, _change: dict[str, Any]) -> None:
        if not self._holding:
            self._refresh()

    def _refresh(self) -> None:
        f = self.filter()
        self._positions = self.browser.filter(f["split"], f["label"], f["modality"], f["text"])
        self._render_page(0)

    def _render_page(self, number: int) -> None:
        self._page, shown = self.browser.page(self._positions, number, self.page_size)
        self.page_w.value = f"page {self._page + 1} of {self.pages} · {self.browser.summary(self._positions)}"
        self.prev_w.disabled = self._page == 0
        self.next_w.disabled = self._page >= self.pages - 1
        self.grid_w.value = H.grid(self.browser.items(shown)) if len(shown) else "<em>no rows match</em>"

    def _stats_html(self) -> str:
        s = self.stats
        rows = max(s["rows"], 1)
        labels = list(s["labels"].items())
        shown = ", ".join(f"{k} {n:,}" for k, n in labels[:20]) + (
            f", ... {len(labels) - 20} more" if len(labels) > 20 else ""
        )
        return H.kv_table(
            {
                "dataset": f"{s['uri']} (version {s['version']})",
                "rows": f"{s['rows']:,}",
                "modalities": ", ".join(
                    f"{m} {n:,} ({100 * n / rows:.0f}%)" for m, n in s["modalities"].items()
                ),
                "combinations": ", ".join(f"{k} {n:,}" for k, n in s["combinations"].items()),
                "splits": ", ".join(f"{k} {n:,}" for k, n in s["splits"].items()),
                "labels": f"{len(labels)} distinct: {shown}"
                + (f" (unlabelled {s['unlabelled']:,})" if s["unlabelled"] else ""),
                "metadata": ", ".join(f"{k} ({v})" for k, v in s["metadata_columns"].items()) or "-",
                "embeddings": ", ".join(f"{k} [{d}]" for k, d in s["embedding_columns"].items()) or "-",
                "size": f"{s['size_bytes'] / 2**20:.1f} MiB",
            },
            css_class="mmpt-table mmpt-stats",
        )

    def _report_html(self) -> str:
        r = self.report
        if r is None:
            return "<em>no ingest report next to this dataset</em>"
        totals = r.get("totals", {})
        head = (
            f"<p>last ingest from <code>{H.esc(r.get('source'))}</code> ({H.esc(r.get('finished'))}): "
            f"read {totals.get('read', 0):,}, written {totals.get('written', 0):,}, "
            f"rejected {totals.get('rejected', 0):,}</p>"
        )
        bad = r.get("rejected", [])[:200]
        if not bad:
            return head + "<p>no bad rows</p>"
        return head + H.table(
            bad, ["row", "id", "kind", "modality", "file", "reason"], css_class="mmpt-table mmpt-bad-rows"
        )
