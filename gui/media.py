"""Media bytes to Qt images: PNG/WAV bytes from mmpt become QPixmaps and players; no decoding logic lives here."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QImage, QPixmap


def pixmap(png: bytes | None, size: QSize | None = None) -> QPixmap:
    """A QPixmap from encoded image bytes (empty when None or undecodable), scaled to fit `size`."""
    image = QImage()
    if png:
        image.loadFromData(png)
    pm = QPixmap.fromImage(image)
    if size is not None and not pm.isNull():
        pm = pm.scaled(size, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)
    return pm


def thumbnail_pair(image_png: bytes | None, spectrogram_png: bytes | None, size: QSize) -> QImage:
    """One grid thumbnail: the image, else the spectrogram; a row with both shows the spectrogram as a strip."""
    from PySide6.QtGui import QPainter

    canvas = QImage(size, QImage.Format.Format_ARGB32_Premultiplied)
    canvas.fill(Qt.GlobalColor.transparent)
    painter = QPainter(canvas)
    top = QImage.fromData(image_png) if image_png else QImage()
    strip = QImage.fromData(spectrogram_png) if spectrogram_png else QImage()
    if not top.isNull():
        h = size.height() - (size.height() // 4 if not strip.isNull() else 0)
        scaled = top.scaled(
            QSize(size.width(), h),
            Qt.AspectRatioMode.KeepAspectRatio,
            Qt.TransformationMode.SmoothTransformation,
        )
        painter.drawImage((size.width() - scaled.width()) // 2, (h - scaled.height()) // 2, scaled)
        if not strip.isNull():
            band = strip.scaled(
                QSize(size.width(), size.height() // 4),
                Qt.AspectRatioMode.IgnoreAspectRatio,
                Qt.TransformationMode.SmoothTransformation,
            )
            painter.drawImage(0, h, band)
    elif not strip.isNull():
        scaled = strip.scaled(
            size, Qt.AspectRatioMode.IgnoreAspectRatio, Qt.TransformationMode.SmoothTransformation
        )
        painter.drawImage(0, 0, scaled)
    painter.end()
    return canvas
