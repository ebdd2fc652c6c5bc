"""Small HTML fragments the panels show: item cards with thumbnails and players, key/value and plain tables."""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

CARD_STYLE = (
    "<style>.mmpt-grid{display:flex;flex-wrap:wrap;gap:6px}"
    ".mmpt-card{border:1px solid #ddd;border-radius:4px;padding:4px;width:180px;font-size:11px;"
    "overflow:hidden;background:#fff}"
    ".mmpt-card img{max-width:84px;max-height:84px;image-rendering:pixelated;margin-right:2px}"
    ".mmpt-card audio{width:170px;height:28px}.mmpt-card .mmpt-id{font-weight:bold}"
    ".mmpt-card .mmpt-score{float:right;color:#555}.mmpt-table td,.mmpt-table th{padding:1px 6px;"
    "text-align:left;font-size:12px}</style>"
)


class CardItem(Protocol):
    """What a card needs: mmpt.explore.media.Item satisfies it."""

    id: str
    modality: str | None
    label: str | None
    split: str | None
    caption: str | None
    note: str | None

    def image_uri(self) -> str | None: ...
    def audio_uri(self) -> str | None: ...
    def spectrogram_uri(self) -> str | None: ...


def esc(value: Any) -> str:
    """HTML-escaped text of a value ('-' for None)."""
    return "-" if value is None else html.escape(str(value))


def card(item: CardItem, score: float | None = None, extra_class: str = "", autoplay: bool = False) -> str:
    """One item as a card: id, modality/label/split, thumbnail, spectrogram, audio player, caption.

    `autoplay` starts the clip as soon as the card is shown (the hover card: browsers allow it once the user
    has interacted with the page, as running a cell does)."""
    meta = " · ".join(esc(v) for v in (item.modality, item.label, item.split) if v)
    parts = [
        f'<div class="mmpt-card {extra_class}" data-id="{esc(item.id)}" data-modality="{esc(item.modality)}">',
        f'<span class="mmpt-id">{esc(item.id)}</span>',
    ]
    if score is not None:
        parts.append(f'<span class="mmpt-score">{score:.3f}</span>')
    parts.append(f"<div><small>{meta}</small></div><div>")
    if item.image_uri():
        parts.append(f'<img class="mmpt-thumb" src="{item.image_uri()}" alt="image">')
    if item.spectrogram_uri():
        parts.append(f'<img class="mmpt-spec" src="{item.spectrogram_uri()}" alt="spectrogram">')
    parts.append("</div>")
    if item.audio_uri():
        play = " autoplay" if autoplay else ' preload="none"'
        parts.append(f'<audio class="mmpt-audio" controls{play} src="{item.audio_uri()}"></audio>')
    if item.caption:
        parts.append(f'<div class="mmpt-caption">{esc(item.caption)}</div>')
    if item.note:
        parts.append(f"<div><small>{esc(item.note)}</small></div>")
    parts.append("</div>")
    return "".join(parts)


def grid(
    items: Iterable[CardItem],
    scores: Sequence[float] | None = None,
    title: str = "",
    css_class: str = "mmpt-items",
) -> str:
    """Cards in a wrapping grid under a title."""
    items = list(items)
    cards = "".join(card(it, None if scores is None else scores[i]) for i, it in enumerate(items))
    head = f'<div class="mmpt-grid-title"><b>{esc(title)}</b></div>' if title else ""
    return f'{CARD_STYLE}<div class="{css_class}">{head}<div class="mmpt-grid">{cards}</div></div>'


def kv_table(pairs: Mapping[str, Any], css_class: str = "mmpt-table") -> str:
    """A two-column table of label -> value (values already HTML when they are `Markup`)."""
    rows = "".join(
        f"<tr><th>{esc(k)}</th><td>{v if isinstance(v, Markup) else esc(v)}</td></tr>"
        for k, v in pairs.items()
    )
    return f'{CARD_STYLE}<table class="{css_class}">{rows}</table>'


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], css_class: str = "mmpt-table") -> str:
    """Rows of dicts as an HTML table with the given columns."""
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{esc(r.get(c))}</td>" for c in columns) + "</tr>" for r in rows)
    return (
        f'{CARD_STYLE}<table class="{css_class}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
    )


class Markup(str):
    """A string that is already HTML (kv_table does not escape it)."""
