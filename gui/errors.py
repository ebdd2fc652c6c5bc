"""Errors as a dialog with the one-line reason and the details on request, never a crash or a frozen window."""

from __future__ import annotations

import sys
import traceback
from types import TracebackType

from PySide6.QtWidgets import QMessageBox, QWidget

_OPEN: list[
    QMessageBox
] = []  # dialogs currently shown (tests read them; repeats of one reason are not stacked)


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type name when it has none."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def show_error(parent: QWidget | None, reason: str, details: str = "", title: str = "mmpt") -> QMessageBox:
    """Show a non-blocking error dialog: the reason as its text, the traceback or report under "Show Details"."""
    for box in _OPEN:
        if box.text() == reason and box.isVisible():
            return box
    box = QMessageBox(QMessageBox.Icon.Warning, title, reason, QMessageBox.StandardButton.Close, parent)
    box.setObjectName("errorDialog")
    if details:
        box.setDetailedText(details)
    box.finished.connect(lambda _=0, b=box: _OPEN.remove(b) if b in _OPEN else None)
    _OPEN.append(box)
    box.open()
    return box


def open_dialogs() -> list[QMessageBox]:
    """Error dialogs on screen now."""
    return [b for b in _OPEN if b.isVisible()]


def close_dialogs() -> None:
    """Close every error dialog (tests, and the window's close)."""
    for box in list(_OPEN):
        box.done(0)


def show_exception(parent: QWidget | None, exc: BaseException) -> QMessageBox:
    """An exception as an error dialog."""
    return show_error(parent, one_line(exc), "".join(traceback.format_exception(exc)))


def install_excepthook(parent_getter) -> None:
    """Route uncaught exceptions from slots to a dialog instead of a stderr trace with a half-updated window."""

    def hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, exc, tb)
            return
        sys.__excepthook__(kind, exc, tb)
        show_error(parent_getter(), one_line(exc), "".join(traceback.format_exception(kind, exc, tb)))

    sys.excepthook = hook
