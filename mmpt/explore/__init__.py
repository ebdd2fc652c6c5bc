"""mmpt.explore: the headless explorer session that the notebook panel and the desktop app both observe.

`Explorer(dataset, run)` turns a run's embedding columns into 2-D points (one per row and modality) with
hover cards, neighbours, search, a selection with change callbacks, exports and stable colour maps.
`RowBrowser(dataset)` filters, counts and pages a dataset's rows and reads their cards and thumbnails.
Names are imported on first use so that `import mmpt.explore` stays cheap.
"""

from __future__ import annotations

from mmpt.lazy import lazy_exports

_API: dict[str, str] = {
    "Explorer": "mmpt.explore.session",
    "Item": "mmpt.explore.media",
    "LayoutJob": "mmpt.explore.layout",
    "RowBrowser": "mmpt.explore.browse",
    "Signal": "mmpt.explore.events",
    "category_colours": "mmpt.explore.colours",
}

__all__, __getattr__ = lazy_exports(__name__, _API)
