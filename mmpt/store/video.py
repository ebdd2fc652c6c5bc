"""Video files as input rows: a chosen frame becomes the row's image and the audio track its audio.

A row whose media is a video (a `video` column of a manifest, a video file in a folder tree, a video member of a
webdataset shard) is decoded with PyAV (its wheels bundle FFmpeg) in the validation workers: the frame shown at
the chosen time of the clip window (default its middle) is stored as JPEG (or PNG), and the audio track of the
window, downmixed to mono at its native rate, as 16-bit FLAC. The window is [start, end) from the manifest's
start/end columns (VGGSound / AudioSet style), else the whole file. See docs/ingest-sources.md.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from mmpt.errors import DataError
from mmpt.store.limits import ReadLimits, Refused, size_text
from mmpt.store.media_headers import check_audio_header, check_pixels
from mmpt.store.safe_read import read_ref
from mmpt.store.source import Source

if TYPE_CHECKING:
    from mmpt.store.validate import CheckOptions

VIDEO_EXTS = (".mp4", ".m4v", ".mkv", ".webm", ".avi", ".mov")
# Columns read as the clip window, in seconds from the start of the file; the first one present is used.
START_COLUMNS = ("start", "start_seconds", "start_time", "start_sec")
END_COLUMNS = ("end", "end_seconds", "end_time", "end_sec")
IMAGE_FORMATS = ("jpeg", "png")
JPEG_QUALITY = 95
SEEK_AFTER = 30.0  # an audio clip starting later than this many seconds is reached by seeking
SEEK_PREROLL = 1.0  # seconds decoded before a clip's start after a seek


@dataclass(frozen=True)
class VideoOptions:
    """How a video becomes rows: which frame (`frame`: "middle", a fraction 0..1 of the clip window, or seconds
    into it like "2.5s"), or `frames` evenly spaced frames as rows `<id>#f0`, `<id>#f1`, ... (each paired with
    the clip's audio); the image encoding; and whether a video without an audio track rejects its row."""

    frame: str | float = "middle"
    frames: int = 1
    image_format: str = "jpeg"
    require_audio: bool = False

    def __post_init__(self) -> None:
        parse_frame(self.frame)
        if not isinstance(self.frames, int) or self.frames < 1:
            raise DataError(f"video frames must be a whole number >= 1, got {self.frames!r}")
        if self.frames > 1 and parse_frame(self.frame) != ("fraction", 0.5):
            raise DataError("choose one frame position (--video-frame) or several frames (--video-frames)")
        if self.image_format not in IMAGE_FORMATS:
            raise DataError(f"video image format must be jpeg or png, got {self.image_format!r}")


@dataclass(frozen=True)
class VideoInput:
    """A source (manifest, folder tree, DataFrame, shards) to ingest with these video options:
    `mmpt.ingest(VideoInput("clips.csv", VideoOptions(frames=3)), "clips.lance")`."""

    source: Any
    options: VideoOptions = field(default_factory=VideoOptions)


def parse_frame(value: str | float) -> tuple[str, float]:
    """("fraction", f) for "middle" or a number in 0..1, ("seconds", s) for "2.5s"; else a DataError."""
    text = str(value).strip().lower()
    try:
        if text == "middle":
            return "fraction", 0.5
        if text.endswith("s"):
            seconds = float(text[:-1])
            if math.isfinite(seconds) and seconds >= 0:
                return "seconds", seconds
        else:
            fraction = float(text)
            if 0 <= fraction <= 1:
                return "fraction", fraction
    except ValueError:
        pass
    raise DataError(
        f"video frame must be middle, a fraction of the clip in 0..1 or seconds into it like 2.5s, got {value!r}"
    )


def window_columns(names: list[str]) -> tuple[str | None, str | None]:
    """The manifest columns holding the clip window's start and end, if any."""
    start = next((n for n in START_COLUMNS if n in names), None)
    end = next((n for n in END_COLUMNS if n in names), None)
    return start, end


def with_video(src: Source, options: VideoOptions) -> Source:
    """`src` whose video rows carry `options`; with several frames each becomes rows `<id>#f<k>`."""

    def chunks(size: int) -> Iterator[list[dict[str, Any]]]:
        checked = False
        for chunk in src.chunks(size):
            out: list[dict[str, Any]] = []
            for row in chunk:
                video = row.get("video")
                if video is None:
                    out.append(row)
                    continue
                if not checked:
                    require_pyav()
                    checked = True
                out.extend(_frame_rows(row, video, options))
            yield out

    total = src.total if options.frames == 1 else None
    return Source(name=src.name, metadata=src.metadata, total=total, chunks=chunks, root=src.root)


def require_pyav() -> None:
    """A DataError saying how to install PyAV when it is missing (video rows need it)."""
    try:
        import av  # noqa: F401
    except ImportError:
        raise DataError("ingesting video needs PyAV: pip install 'mmpt[video]'") from None


def _frame_rows(row: dict[str, Any], video: dict[str, Any], options: VideoOptions) -> list[dict[str, Any]]:
    kind, value = parse_frame(options.frame)
    count = 1 if row.get("image") is not None else options.frames  # a row's own image is not replaced
    rows = []
    for k in range(count):
        spec = {
            **video,
            "at": ("fraction", (k + 0.5) / count) if count > 1 else (kind, value),
            "image_format": options.image_format,
            "require_audio": options.require_audio,
        }
        new = {**row, "video": spec}
        if count > 1 and row.get("id") is not None:
            new["id"] = f"{row['id']}#f{k}"
        if not new.get("source"):
            new["source"] = video_name(video)
        rows.append(new)
    return rows


def video_name(video: dict[str, Any]) -> str:
    """How a report names a video: its path or URI, or the shard member / column its bytes came from."""
    if video.get("name"):
        return str(video["name"])
    ref = video.get("ref")
    if isinstance(ref, str | os.PathLike):
        return os.fspath(ref)
    return "video column (in-memory bytes)"


# --- decoding (in the validation workers) -------------------------------------------------------------


class VideoRefused(Refused):
    """A video that cannot give its row what it needs; names the file for the report (like validate's
    Rejection, which validation reads these the same as)."""

    def __init__(self, kind: str, reason: str, file: str) -> None:
        super().__init__(kind, reason)
        self.modality, self.file = "video", file


def decode_video_row(row: dict[str, Any], options: CheckOptions) -> dict[str, Any]:
    """The row with the image (the chosen frame) and the audio (the window's track, mono FLAC) taken from its
    video where it has none; a video that gives no frame is a VideoRefused naming the file. A video without an
    audio track keeps its frame and notes "no audio track" (rejects the row with `require_audio`)."""
    video = row["video"]
    name = video_name(video)
    want_image, want_audio = row.get("image") is None, row.get("audio") is None
    out = {**row, "video": None, "source": row.get("source") or name}
    if not (want_image or want_audio):
        return out
    try:
        data = _video_bytes(video.get("ref"), options)
        image, audio, notes = _decode(data, video, want_image, want_audio, options.limits)
    except Refused as refused:
        raise VideoRefused(refused.kind, refused.with_flag(), name) from None
    if want_image:
        out["image"] = image
    if want_audio:
        out["audio"] = audio
    if notes:
        if video.get("require_audio"):
            raise VideoRefused("no_audio_track", f"{notes[0]} (audio required: --video-require-audio)", name)
        where = {"row": row.get("row"), "id": row.get("id"), "source": out["source"], "modality": "audio"}
        kept = [
            {**where, "file": name, "kind": "no_audio_track", "reason": f"{n}; the row keeps its frame"}
            for n in notes
        ]
        out["notes"] = [*(row.get("notes") or []), *kept]
    return out


def _video_bytes(ref: Any, options: CheckOptions) -> bytes:
    if isinstance(ref, bytes | bytearray | memoryview):
        data = bytes(ref)
        if len(data) > options.limits.max_blob_bytes:
            limit = options.limits.max_blob_bytes
            raise Refused(
                "too_large",
                f"video is {size_text(len(data))}, over the {size_text(limit)} limit",
                "--max-blob-mb",
            )
    elif isinstance(ref, str | os.PathLike):
        limits = options.limits
        data = read_ref(
            os.fspath(ref),
            limits.max_blob_bytes,
            what="video",
            root=options.root,
            follow_symlinks=limits.follow_symlinks,
        )
    else:
        raise Refused("bad_video", f"video value of type {type(ref).__name__} is neither bytes nor a path")
    if not data:
        raise Refused("corrupt_video", "video is empty (0 bytes)")
    return data


def _decode(
    data: bytes, video: dict[str, Any], want_image: bool, want_audio: bool, limits: ReadLimits
) -> tuple[bytes | None, bytes | None, list[str]]:
    import av

    try:
        with _open(data) as container:
            if want_image and not container.streams.video:
                raise Refused("no_frames", "video has no video stream (no frames)")
            start, end = _window(video.get("start"), video.get("end"))
            duration = _duration(container)
            if duration is not None and start >= duration:
                raise Refused(
                    "bad_clip_window",
                    f"clip window starts at {start:g} s, past the end of the {duration:.2f} s video",
                )
            end = duration if end is None else end if duration is None else min(end, duration)
            if end is None:
                raise Refused("corrupt_video", "video has no duration and no packets")
            image = _frame(container, start, end, video.get("at"), video, limits) if want_image else None
        audio, notes = None, []
        if want_audio:  # a fresh demuxer: one left mid-stream by the frame search drops audio packets
            with _open(data) as container:
                audio, note = _audio(container, start, end, limits)
            notes = [note] if note else []
        return image, audio, notes
    except av.FFmpegError as exc:
        raise Refused("corrupt_video", f"video does not decode: {_message(exc)}") from None


def _open(data: bytes) -> Any:
    import av

    try:
        return av.open(io.BytesIO(data), mode="r")
    except av.FFmpegError as exc:
        raise Refused("corrupt_video", f"video does not open: {_message(exc)}") from None


def _window(start: Any, end: Any) -> tuple[float, float | None]:
    """The clip window [start, end) in seconds; a value that is not a time is a Refused naming it."""
    begin = _seconds(start, "start")
    stop = _seconds(end, "end")
    begin = 0.0 if begin is None else begin
    if stop is not None and stop <= begin:
        raise Refused("bad_clip_window", f"clip window end {stop:g} s is not after its start {begin:g} s")
    return begin, stop


def _seconds(value: Any, what: str) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise Refused("bad_clip_window", f"clip {what} {value!r} is not a time in seconds") from None
    if math.isnan(seconds):
        return None
    if not math.isfinite(seconds) or seconds < 0:
        raise Refused("bad_clip_window", f"clip {what} {value!r} is not a time in seconds >= 0")
    return seconds


def _duration(container: Any) -> float | None:
    """Seconds from the container header, else from the first stream's last packet (a demux pass, no decode)."""
    if container.duration is not None and container.duration > 0:
        return float(container.duration) / 1_000_000  # AV_TIME_BASE
    if not container.streams:
        return None
    stream = (container.streams.video or container.streams.audio or container.streams)[0]
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    last = None
    for packet in container.demux(stream):
        if packet.pts is not None and packet.time_base is not None:
            stop = float((packet.pts + (packet.duration or 0)) * packet.time_base)
            last = stop if last is None else max(last, stop)
    container.seek(0)
    return last - _stream_start(stream) if last is not None else None


def _stream_start(stream: Any) -> float:
    if stream.start_time is None or stream.time_base is None:
        return 0.0
    return float(stream.start_time * stream.time_base)


def _frame(
    container: Any, start: float, end: float, at: Any, video: dict[str, Any], limits: ReadLimits
) -> bytes:
    """The frame shown at the chosen time of the window, encoded as JPEG or PNG."""
    stream = container.streams.video[0]
    check_pixels(stream.codec_context.width, stream.codec_context.height, limits)
    kind, value = at if at is not None else ("fraction", 0.5)
    if kind == "seconds":
        if start + value >= end:
            raise Refused(
                "bad_clip_window", f"frame at {value:g} s lies past the clip's end ({end - start:.2f} s long)"
            )
        target = start + value
    else:
        target = min(start + value * (end - start), max(start, end - 1e-6))
    base = _stream_start(stream)
    try:
        container.seek(int((base + target) / stream.time_base), stream=stream, backward=True)
    except Exception:  # noqa: BLE001 - a file without a seek index is decoded from its start
        container.seek(0)
    chosen = None
    for frame in container.decode(stream):
        time = frame.time
        if chosen is not None and time is not None and time - base > target + 1e-9:
            break
        chosen = frame
        if time is None:  # no timestamps: the first frame after the seek point
            break
    if chosen is None:
        raise Refused("no_frames", "video stream decodes to no frames")
    image = chosen.to_image()
    buf = io.BytesIO()
    if video.get("image_format") == "png":
        image.save(buf, format="PNG")
    else:
        image.save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def _audio(container: Any, start: float, end: float, limits: ReadLimits) -> tuple[bytes | None, str | None]:
    """The window of the first audio track, downmixed to mono at its native rate, as 16-bit FLAC; or None and
    why when there is no track or no samples in the window."""
    import av
    import soundfile as sf

    if not container.streams.audio:
        return None, "video has no audio track"
    stream = container.streams.audio[0]
    rate = stream.codec_context.sample_rate
    channels = stream.codec_context.channels or 1
    if not rate:
        return None, "audio track has no sample rate"
    check_audio_header(math.ceil((end - start) * rate), rate, channels, limits)
    first, stop = round(start * rate), round(end * rate)
    base = _stream_start(stream)
    if start > SEEK_AFTER:  # else decoded from the file's start: sample-exact in every container
        try:
            # a second early: decoders with pre-roll (Opus, AAC) settle; samples are then placed by the first
            # frame's timestamp, exact to the container's precision (1 ms in Matroska / WebM)
            preroll = start - SEEK_PREROLL
            container.seek(int((base + preroll) / stream.time_base), stream=stream, backward=True)
        except Exception:  # noqa: BLE001 - a file without a seek index is decoded from its start
            container.seek(0)
    else:
        container.seek(0)
    resampler = av.AudioResampler(format="fltp")  # planar float, same layout and rate: decoding only
    pieces: list[np.ndarray] = []
    origin: int | None = None
    position = 0
    for frame in container.decode(stream):
        if origin is None:
            origin = round((frame.time - base) * rate) if frame.time is not None else 0
            position = origin
        for out in resampler.resample(frame):
            samples = out.to_ndarray().mean(axis=0, dtype=np.float32)
            pieces.append(samples)
            position += samples.shape[0]
        if position >= stop:
            break
    else:
        for out in resampler.resample(None):
            pieces.append(out.to_ndarray().mean(axis=0, dtype=np.float32))
    if origin is None or not pieces:
        return None, "audio track decodes to no samples"
    signal = np.concatenate(pieces)[max(0, first - origin) : max(0, stop - origin)]
    if signal.shape[0] == 0:
        return None, "audio track holds no samples in the clip window"
    buf = io.BytesIO()
    sf.write(buf, np.clip(signal, -1.0, 1.0), rate, format="FLAC", subtype="PCM_16")
    return buf.getvalue(), None


def _message(exc: Exception) -> str:
    """FFmpeg's reason without its error number and the '<none>' file name PyAV adds for in-memory input."""
    text = str(getattr(exc, "strerror", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
