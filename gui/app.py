"""Start the desktop app: `mmpt gui [DATASET] [RUN]` or `mmpt-gui [DATASET] [RUN]`."""

from __future__ import annotations

import os
import sys
import time

STARTED = time.perf_counter()


def create_app(argv: list[str] | None = None):
    """The QApplication (made once), with quiet multimedia logging and pyqtgraph's raster settings."""
    os.environ.setdefault("QT_LOGGING_RULES", "qt.multimedia.*=false")
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:
        app = QApplication(argv if argv is not None else sys.argv[:1])
        app.setOrganizationName("mmpt")
        app.setApplicationName("mmpt-gui")
    import pyqtgraph as pg

    pg.setConfigOptions(antialias=False, useOpenGL=False, background="w", foreground="#303030")
    return app


def run_app(dataset: str | None = None, run: str | None = None, settings_path: str | None = None) -> int:
    """Open the main window and run the event loop until it closes; returns the exit status."""
    app = create_app()
    from gui.errors import install_excepthook
    from gui.main_window import MainWindow
    from gui.settings import Settings
    from gui.workers import shutdown_workers

    window = MainWindow(Settings(settings_path) if settings_path else None, dataset=dataset, run=run)
    install_excepthook(lambda: window)
    window.show()
    if os.environ.get("MMPT_GUI_TIMING"):
        from PySide6.QtCore import QTimer

        QTimer.singleShot(0, lambda: print(f"window shown {time.perf_counter() - STARTED:.3f} s", flush=True))
    status = app.exec()
    shutdown_workers()
    return status
