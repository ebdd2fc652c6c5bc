"""The read limits applied to every user-given file and field (ingest and raw-input embedding), in one place.

A hostile or broken input (a 2 MB caption, /dev/zero as an image, a 10000x10000 PNG of 650 KB) is refused
with a one-line reason instead of exhausting memory; see docs/data-safety.md.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReadLimits:
    """How much one input may hold; each limit refuses that row (or that query), never the whole source.

    `follow_symlinks=False` reads a symlink below the source root only when it resolves inside that root.
    """

    max_blob_bytes: int = 64 << 20  # one image or audio file, as stored (64 MiB)
    max_pixels: int = 40_000_000  # width x height from the image header, checked before decoding
    max_text_bytes: int = 64 << 10  # one text value (caption, id, label, metadata) as UTF-8 (64 KiB)
    max_audio_seconds: float = 600.0  # duration from the audio header
    max_audio_samples: int = 100_000_000  # frames x channels from the header (400 MB as float32)
    follow_symlinks: bool = False


DEFAULT_LIMITS = ReadLimits()


class Refused(Exception):
    """An input refused by a limit or an access rule: a short kind (for report totals), a one-line reason, and
    the `mmpt ingest` flag that raises the limit (named in ingest's report, not where no such flag exists)."""

    def __init__(self, kind: str, reason: str, flag: str | None = None) -> None:
        super().__init__(kind, reason)
        self.kind, self.reason, self.flag = kind, reason, flag

    def __str__(self) -> str:
        return self.reason

    def with_flag(self) -> str:
        """The reason and the way out on the command line."""
        return f"{self.reason} (raise it with {self.flag})" if self.flag else self.reason


def read_limits(
    *,
    max_blob_mb: float | None = None,
    max_pixels: int | None = None,
    max_text_kb: float | None = None,
    max_audio_seconds: float | None = None,
    max_audio_samples: int | None = None,
    follow_symlinks: bool = False,
) -> ReadLimits:
    """ReadLimits from the CLI's units (MiB, KiB); None keeps a default, a value that is not positive is a DataError."""
    from mmpt.errors import DataError

    given = {
        "max_blob_mb": max_blob_mb,
        "max_pixels": max_pixels,
        "max_text_kb": max_text_kb,
        "max_audio_seconds": max_audio_seconds,
        "max_audio_samples": max_audio_samples,
    }
    for name, value in given.items():
        if value is not None and not value > 0:
            raise DataError(f"{name} must be positive, got {value}")
    d = DEFAULT_LIMITS
    return ReadLimits(
        max_blob_bytes=d.max_blob_bytes if max_blob_mb is None else int(max_blob_mb * (1 << 20)),
        max_pixels=d.max_pixels if max_pixels is None else int(max_pixels),
        max_text_bytes=d.max_text_bytes if max_text_kb is None else int(max_text_kb * (1 << 10)),
        max_audio_seconds=d.max_audio_seconds if max_audio_seconds is None else float(max_audio_seconds),
        max_audio_samples=d.max_audio_samples if max_audio_samples is None else int(max_audio_samples),
        follow_symlinks=follow_symlinks,
    )


def size_text(n: float) -> str:
    """A byte count for messages: 2.0 MiB, 64 KiB, 300 bytes."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}".replace(".0 ", " ")
    return f"{int(n)} bytes"
