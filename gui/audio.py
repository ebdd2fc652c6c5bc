"""An audio clip player (QtMultimedia) that says so when the machine has no audio output device."""

from __future__ import annotations

import tempfile
from pathlib import Path

from PySide6.QtCore import QUrl, Signal
from PySide6.QtMultimedia import QAudioOutput, QMediaDevices, QMediaPlayer
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QWidget

NO_DEVICE = "no audio output device: playback is unavailable"


def has_audio_output() -> bool:
    """Whether Qt sees any audio output (none without a sound server, e.g. on a headless box)."""
    return bool(QMediaDevices.audioOutputs())


class AudioPlayer(QWidget):
    """Play WAV bytes; `ended` fires when a clip played to its end (EndOfMedia)."""

    ended = Signal()
    failed = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._dir = tempfile.TemporaryDirectory(prefix="mmpt-gui-audio-")
        self._clip: bytes | None = None
        self._count = 0
        self.player = QMediaPlayer(self)
        self.output = QAudioOutput(self)
        self.player.setAudioOutput(self.output)
        self.player.mediaStatusChanged.connect(self._status_changed)
        self.player.errorOccurred.connect(lambda _e, msg: self._fail(msg or "audio playback failed"))
        self.button = QPushButton("Play")
        self.button.setObjectName("playButton")
        self.button.clicked.connect(self.toggle)
        self.label = QLabel()
        self.label.setObjectName("audioStatus")
        self.label.setWordWrap(True)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.button)
        layout.addWidget(self.label, 1)
        self._devices = QMediaDevices(self)
        self._devices.audioOutputsChanged.connect(self._refresh_device)
        self._refresh_device()
        self.set_clip(None)

    @property
    def available(self) -> bool:
        """Whether an output device exists to play on."""
        return has_audio_output()

    def _refresh_device(self) -> None:
        self.output.setDevice(QMediaDevices.defaultAudioOutput())
        self._update()

    def set_clip(self, wav: bytes | None, title: str = "") -> None:
        """Load a clip (WAV bytes) without playing it; None clears the player."""
        self.player.stop()
        self._clip = wav
        self._title = title
        if wav is not None:
            self._count += 1
            path = (
                Path(self._dir.name) / f"clip-{self._count % 4}.wav"
            )  # a few names: the player may hold one
            path.write_bytes(wav)
            self.player.setSource(QUrl.fromLocalFile(str(path)))
        else:
            self.player.setSource(QUrl())
        self._update()

    def play(self, wav: bytes | None = None, title: str = "") -> bool:
        """Play a clip (or the loaded one); False, with the reason shown, when there is no output device."""
        if wav is not None:
            self.set_clip(wav, title)
        if self._clip is None:
            return False
        if not self.available:
            self._update()
            return False
        self.player.setPosition(0)
        self.player.play()
        self._update()
        return True

    def toggle(self) -> None:
        """Play or stop."""
        if self.player.playbackState() == QMediaPlayer.PlaybackState.PlayingState:
            self.player.stop()
            self._update()
        else:
            self.play()

    def stop(self) -> None:
        """Stop playback."""
        self.player.stop()
        self._update()

    def _status_changed(self, status: QMediaPlayer.MediaStatus) -> None:
        if status == QMediaPlayer.MediaStatus.EndOfMedia:
            self._update()
            self.ended.emit()
        elif status == QMediaPlayer.MediaStatus.InvalidMedia:
            self._fail("the clip does not play (invalid media)")

    def _fail(self, reason: str) -> None:
        self.label.setText(reason)
        self.failed.emit(reason)

    def _update(self) -> None:
        playing = self.player.playbackState() == QMediaPlayer.PlaybackState.PlayingState
        self.button.setText("Stop" if playing else "Play")
        if not self.available:
            self.button.setEnabled(False)
            self.label.setText(NO_DEVICE)
        elif self._clip is None:
            self.button.setEnabled(False)
            self.label.setText("no clip")
        else:
            self.button.setEnabled(True)
            self.label.setText(("playing " if playing else "") + (self._title or "clip"))

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        """Stop and drop the temp files."""
        self.player.stop()
        self._dir.cleanup()
        super().closeEvent(event)
