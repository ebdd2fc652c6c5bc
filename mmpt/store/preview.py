"""Notebook preview of dataset rows: thumbnails, audio players and captions as self-contained HTML."""

from __future__ import annotations

import base64
import html
import io
from typing import TYPE_CHECKING

from mmpt.store.schema import ID, LABEL, SPLIT, TEXT

if TYPE_CHECKING:
    from mmpt.store.dataset import MmptDataset

THUMBNAIL = 96
MAX_INLINE_AUDIO = 2 << 20  # longer clips are cut to their first seconds and re-encoded as WAV
PREVIEW_SECONDS = 10


class PreviewHTML(str):
    """An HTML string that Jupyter renders (`_repr_html_`) and that prints as its source elsewhere."""

    def _repr_html_(self) -> str:
        return str(self)


def image_data_uri(data: bytes, size: int = THUMBNAIL) -> str:
    """A PNG thumbnail of encoded image bytes as a data URI (or an error note if it does not decode)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as src:
        img = src.convert("RGB")
        img.thumbnail((size, size))
        buf = io.BytesIO()
        img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def audio_mime(data: bytes) -> str | None:
    """The MIME type browsers need for encoded audio bytes, from their magic number."""
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "audio/wav"
    if data[:4] == b"fLaC":
        return "audio/flac"
    if data[:4] == b"OggS":
        return "audio/ogg"
    if data[:3] == b"ID3" or data[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"):
        return "audio/mpeg"
    return None


def audio_data_uri(data: bytes) -> str:
    """Encoded audio as a data URI; large or unusual formats become a short 16-bit WAV excerpt."""
    mime = audio_mime(data)
    if mime is None or len(data) > MAX_INLINE_AUDIO:
        import soundfile as sf

        with sf.SoundFile(io.BytesIO(data)) as f:
            wave = f.read(frames=int(f.samplerate * PREVIEW_SECONDS), dtype="float32", always_2d=True)
            rate = f.samplerate
        buf = io.BytesIO()
        sf.write(buf, wave, rate, format="WAV", subtype="PCM_16")
        data, mime = buf.getvalue(), "audio/wav"
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def preview_html(ds: MmptDataset, n: int = 8, split: str | None = None) -> PreviewHTML:
    """HTML table of the first n rows (of a split): id, image thumbnail, audio player, caption, label, split."""
    positions = ds.split_indices(split)[: max(0, n)]
    names = ds.schema.names
    columns = [c for c in (ID, TEXT, LABEL, SPLIT) if c in names]
    table = ds.take(positions, columns=columns).to_pylist() if len(positions) else []
    blobs = {
        m: ds.read_blobs(m, positions) if m in names and len(positions) else [None] * len(positions)
        for m in ("image", "audio")
    }
    cells = []
    for k, row in enumerate(table):
        image, audio = blobs["image"][k], blobs["audio"][k]
        cells.append(
            "<tr>"
            f"<td><code>{html.escape(str(row.get(ID)))}</code></td>"
            f"<td>{_image_cell(image)}</td>"
            f"<td>{_audio_cell(audio)}</td>"
            f"<td>{_text(row.get(TEXT))}</td>"
            f"<td>{_text(row.get(LABEL))}</td>"
            f"<td>{_text(row.get(SPLIT))}</td>"
            "</tr>"
        )
    head = "".join(f"<th>{h}</th>" for h in ("id", "image", "audio", "text", "label", "split"))
    caption = (
        f"{html.escape(ds.uri)} &middot; version {ds.version} &middot; first {len(table)} of {len(ds):,} rows"
    )
    if split:
        caption += f" in {html.escape(split)}"
    return PreviewHTML(
        '<table class="mmpt-preview" style="border-collapse:collapse">'
        f'<caption style="text-align:left">{caption}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(cells)}</tbody></table>"
    )


def _image_cell(data: bytes | None) -> str:
    if data is None:
        return "<em>-</em>"
    try:
        return f'<img src="{image_data_uri(data)}" style="image-rendering:pixelated" alt="image"/>'
    except Exception as exc:  # noqa: BLE001 - a preview shows the problem instead of failing
        return f"<em>undecodable image: {html.escape(type(exc).__name__)}</em>"


def _audio_cell(data: bytes | None) -> str:
    if data is None:
        return "<em>-</em>"
    try:
        return f'<audio controls preload="none" src="{audio_data_uri(data)}"></audio>'
    except Exception as exc:  # noqa: BLE001
        return f"<em>undecodable audio: {html.escape(type(exc).__name__)}</em>"


def _text(value: object) -> str:
    return "<em>-</em>" if value is None else html.escape(str(value))
