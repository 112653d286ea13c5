"""A match shown where it was filmed: its video frame with the box drawn, or a short clip.

Usage::

    picture = frame_with_box("cam3.mp4", 557, [396, 5, 554, 395], "tracklet 100003")
    export_clip("cam3.mp4", 557, [396, 5, 554, 395], "match.mp4", seconds=2.0)
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from .decode import VideoError, open_frames, require_av

BOX_COLOUR = (40, 200, 60)
CLIP_SUFFIXES = (".mp4", ".jpg", ".jpeg", ".png")  # a clip, or the one frame


def draw_box(image: Image.Image, box, label: str = "") -> Image.Image:
    """``image`` with ``box`` (x0, y0, x1, y1) outlined and ``label`` above it."""
    image = image.copy()
    draw = ImageDraw.Draw(image)
    width = max(2, image.width // 300)
    draw.rectangle([int(v) for v in box], outline=BOX_COLOUR, width=width)
    if label:
        x, y = int(box[0]), max(0, int(box[1]) - 14)
        draw.rectangle([x, y, x + 7 * len(label) + 6, y + 13], fill=BOX_COLOUR)
        draw.text((x + 3, y + 1), label, fill=(0, 0, 0))
    return image


def _frames_between(video: str | Path, first: int, last: int):
    for frame in open_frames(video).frames():
        if frame.index > last:
            return
        if frame.index >= first:
            yield frame


def frame_with_box(video: str | Path, frame_index: int, box, label: str = "") -> Image.Image:
    """The video's frame ``frame_index`` with the match's box drawn (VideoError if it has none)."""
    for frame in _frames_between(video, frame_index, frame_index):
        return draw_box(Image.fromarray(frame.pixels), box, label)
    raise VideoError(f"{video}: no frame {frame_index} (the video is shorter or no longer the same)")


def export_clip(
    video: str | Path, frame_index: int, box, out: str | Path, seconds: float = 2.0, label: str = ""
):
    """``seconds`` of video either side of ``frame_index`` to ``out``: an MP4 (MPEG-4 part 2) with
    the match's box drawn on its own frame, or a single JPEG/PNG picture of that frame."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() in (".jpg", ".jpeg", ".png"):
        frame_with_box(video, frame_index, box, label).save(out)
        return out
    av = require_av()
    source = open_frames(video)
    fps = source.fps or 10.0
    span = int(round(seconds * fps))
    with av.open(str(out), "w") as container:
        stream = None
        for frame in _frames_between(video, max(0, frame_index - span), frame_index + span):
            image = Image.fromarray(frame.pixels)
            if frame.index == frame_index:
                image = draw_box(image, box, label)
            if stream is None:
                stream = container.add_stream("mpeg4", rate=round(fps))
                stream.width, stream.height = image.width - image.width % 2, image.height - image.height % 2
                stream.pix_fmt = "yuv420p"
            picture = av.VideoFrame.from_image(image.crop((0, 0, stream.width, stream.height)))
            container.mux(stream.encode(picture))
        if stream is None:
            raise VideoError(f"{video}: no frames around {frame_index}")
        container.mux(stream.encode(None))
    return out
