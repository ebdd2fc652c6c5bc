"""Notebook panels (ipywidgets / anywidget, extra `notebook`): thin views of mmpt.store, mmpt.jobs and mmpt.explore.

Each panel is a plain Python facade that keeps the state and displays one ipywidgets box (`panel.widget`); it
works in JupyterLab, Notebook 7, Voila and VS Code without a JupyterLab extension.
"""

from __future__ import annotations

from mmpt.lazy import lazy_exports

_API: dict[str, str] = {
    "DatasetPanel": "mmpt.notebook.dataset:DatasetPanel",
    "TrainPanel": "mmpt.notebook.train:TrainPanel",
    "ExplorerPanel": "mmpt.notebook.explorer:ExplorerPanel",
    "Poller": "mmpt.notebook.poller:Poller",
}

__all__, __getattr__ = lazy_exports(__name__, _API)
