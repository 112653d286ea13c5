"""Synthetic pedestrians for the demo and the tests: no download, fully reproducible.

Each identity is a procedural figure with its own clothing (mostly dark and neutral
tones; shirt solid/striped/checked/two-tone/logo, short or long sleeves, trousers or
shorts or skirt, shoes, hair style, an optional bag) and body proportions. Each camera
has its own grey street background (wall, paving, pillars) and lighting (colour cast,
brightness). Like a detector's box, the figure fills the crop; each frame jitters pose
(arm and leg swing), scale, position and walking direction, is drawn at twice the size
and downsampled (soft edges), and gets sensor noise. Files are written in MARS naming,
``bbox_test/PPPP/PPPPCcTttttFfff.jpg``, so every layout-aware part of the engine runs on
them.

Usage::

    from reid_search.data.synthetic import generate_dataset
    root = generate_dataset("/tmp/synth", n_people=20, n_cameras=3)
    sorted(p.name for p in root.iterdir())
    # ['bbox_test']
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

PATTERNS = ("solid", "solid", "hstripes", "vstripes", "checks", "twotone", "logo")
LOWER = ("trousers", "trousers", "shorts", "skirt")
BAGS = ("none", "none", "backpack", "handbag", "shoulder")
HAIR = ("short", "short", "long", "cap")
# Everyday clothing: mostly dark and neutral tones, some muted colours, a few bright ones.
NEUTRALS = (
    (25, 25, 28),
    (40, 40, 48),
    (70, 70, 75),
    (120, 120, 125),
    (180, 180, 180),
    (225, 225, 220),
    (35, 45, 80),
    (60, 80, 120),
    (95, 120, 160),
    (150, 130, 100),
    (90, 65, 45),
    (60, 70, 50),
)


def _shade(colour: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    """``colour`` scaled by ``factor``, clipped to 0-255."""
    return tuple(int(min(255, max(0, c * factor))) for c in colour)  # type: ignore[return-value]


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    """A clothing colour: a neutral (60%) or a hue of random strength."""
    if rng.random() < 0.6:
        return _shade(NEUTRALS[int(rng.integers(len(NEUTRALS)))], rng.uniform(0.85, 1.15))
    hue = rng.random()
    sat = rng.uniform(0.3, 0.9)
    val = rng.uniform(0.3, 0.95)
    i = int(hue * 6) % 6
    f = hue * 6 - int(hue * 6)
    p, q, t = val * (1 - sat), val * (1 - f * sat), val * (1 - (1 - f) * sat)
    rgb = [(val, t, p), (q, val, p), (p, val, t), (p, q, val), (t, p, val), (val, p, q)][i]
    return tuple(int(255 * c) for c in rgb)  # type: ignore[return-value]


@dataclass(frozen=True)
class Identity:
    """The look of one synthetic person."""

    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    hair_style: str
    shirt: tuple[int, int, int]
    shirt_pattern: str
    pattern_colour: tuple[int, int, int]
    sleeves: float  # 0.45 short sleeves .. 1.0 long
    lower: str
    lower_colour: tuple[int, int, int]
    shoes: tuple[int, int, int]
    bag: str
    bag_colour: tuple[int, int, int]
    height: float  # fraction of the frame
    girth: float

    @classmethod
    def random(cls, rng: np.random.Generator) -> Identity:
        skin_v = rng.uniform(0.45, 1.0)
        dark_hair = tuple(int(x) for x in rng.integers(10, 70, 3))
        return cls(
            skin=(int(235 * skin_v), int(195 * skin_v), int(165 * skin_v)),
            hair=_colour(rng) if rng.random() < 0.15 else dark_hair,  # type: ignore[arg-type]
            hair_style=str(rng.choice(HAIR)),
            shirt=_colour(rng),
            shirt_pattern=str(rng.choice(PATTERNS)),
            pattern_colour=_colour(rng),
            sleeves=float(rng.choice([0.45, 1.0])),
            lower=str(rng.choice(LOWER)),
            lower_colour=_colour(rng),
            shoes=_colour(rng),
            bag=str(rng.choice(BAGS)),
            bag_colour=_colour(rng),
            height=float(rng.uniform(0.9, 0.98)),
            girth=float(rng.uniform(1.0, 1.35)),
        )


@dataclass(frozen=True)
class Camera:
    """Background and lighting of one synthetic camera (a street or corridor view)."""

    wall: tuple[int, int, int]
    floor: tuple[int, int, int]
    pillars: tuple[float, ...]  # x positions (fractions of the width) of vertical structures
    gain: tuple[float, float, float]  # per-channel colour cast and brightness

    @classmethod
    def random(cls, rng: np.random.Generator) -> Camera:
        brightness = rng.uniform(0.8, 1.15)
        cast = rng.uniform(0.9, 1.1, 3)
        grey = rng.uniform(70, 200)
        return cls(
            wall=tuple(int(grey + x) for x in rng.integers(-15, 16, 3)),
            floor=tuple(int(grey * rng.uniform(0.5, 0.9) + x) for x in rng.integers(-10, 11, 3)),
            pillars=tuple(float(x) for x in rng.uniform(0, 1, int(rng.integers(1, 4)))),
            gain=tuple(float(brightness * c) for c in cast),
        )


def _draw_shirt(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], who: Identity) -> None:
    x0, y0, x1, y1 = box
    draw.rectangle(box, fill=who.shirt)
    step = max(3, (y1 - y0) // 7)
    if who.shirt_pattern == "hstripes":
        for y in range(y0, y1, 2 * step):
            draw.rectangle((x0, y, x1, min(y1, y + step - 1)), fill=who.pattern_colour)
    elif who.shirt_pattern == "vstripes":
        for x in range(x0, x1, 2 * step):
            draw.rectangle((x, y0, min(x1, x + step - 1), y1), fill=who.pattern_colour)
    elif who.shirt_pattern == "checks":
        for y in range(y0, y1, step):
            for x in range(x0, x1, step):
                if ((x - x0) // step + (y - y0) // step) % 2:
                    draw.rectangle(
                        (x, y, min(x1, x + step - 1), min(y1, y + step - 1)), fill=who.pattern_colour
                    )
    elif who.shirt_pattern == "twotone":
        draw.rectangle((x0, (y0 + y1) // 2, x1, y1), fill=who.pattern_colour)
    elif who.shirt_pattern == "logo":
        w, h = x1 - x0, y1 - y0
        draw.ellipse((x0 + w * 0.3, y0 + h * 0.2, x0 + w * 0.7, y0 + h * 0.5), fill=who.pattern_colour)


def _draw_background(
    draw: ImageDraw.ImageDraw, cam: Camera, w: int, h: int, rng: np.random.Generator
) -> None:
    horizon = int(h * rng.uniform(0.45, 0.6))
    draw.rectangle((0, 0, w, horizon), fill=cam.wall)
    draw.rectangle((0, horizon, w, h), fill=cam.floor)
    for x in cam.pillars:  # the camera's fixed structures, seen from slightly different spots
        px = int((x + rng.uniform(-0.05, 0.05)) * w)
        draw.rectangle((px, 0, px + w // 10, horizon), fill=_shade(cam.wall, 0.7))
    for y in range(horizon, h, max(4, h // 16)):  # paving lines
        draw.line((0, y, w, y + int(rng.integers(-3, 4))), fill=_shade(cam.floor, 0.85), width=1)


def render_person(
    who: Identity, cam: Camera, rng: np.random.Generator, size: tuple[int, int] = (128, 64)
) -> Image.Image:
    """Draw one frame of ``who`` seen by ``cam`` at ``size`` = (height, width).

    Drawn at twice the size and downsampled (soft edges like a real detection), the figure
    fills most of the crop, as a detector's box does.
    """
    h, w = size[0] * 2, size[1] * 2
    img = Image.new("RGB", (w, h), cam.wall)
    draw = ImageDraw.Draw(img)
    _draw_background(draw, cam, w, h, rng)

    body_h = h * who.height * rng.uniform(0.95, 1.03)
    cx = w / 2 + rng.uniform(-0.06, 0.06) * w
    top = h * rng.uniform(0.0, 0.04)
    u = body_h / 7.5  # head-height unit
    half = min(w * 0.36, u * 1.05 * who.girth)
    swing = rng.uniform(-1.0, 1.0)
    light = rng.uniform(0.9, 1.1)

    def yy(f: float) -> float:
        return top + f * u

    # legs / lower garment
    hip_y, foot_y = yy(3.9), yy(7.2)
    leg_w = max(3, int(u * 0.85))
    for side in (-1, 1):
        dx = side * half * 0.45 + side * swing * u * 0.55
        leg_colour = who.lower_colour if who.lower == "trousers" else who.skin
        draw.line((cx + side * half * 0.45, hip_y, cx + dx, foot_y), fill=leg_colour, width=leg_w)
        draw.ellipse(
            (cx + dx - u * 0.45, foot_y - u * 0.25, cx + dx + u * 0.45, foot_y + u * 0.25), fill=who.shoes
        )
    if who.lower == "shorts":
        draw.rectangle((cx - half, hip_y, cx + half, yy(5.1)), fill=who.lower_colour)
    elif who.lower == "skirt":
        draw.polygon(
            [(cx - half, hip_y), (cx + half, hip_y), (cx + half * 1.3, yy(5.8)), (cx - half * 1.3, yy(5.8))],
            fill=who.lower_colour,
        )
    else:
        draw.rectangle((cx - half, hip_y, cx + half, yy(4.5)), fill=who.lower_colour)

    # torso, arms, bags
    torso = (int(cx - half), int(yy(1.15)), int(cx + half), int(yy(4.0)))
    if who.bag == "backpack":
        draw.rectangle(
            (torso[0] - int(u * 0.35), yy(1.3), torso[0] + int(u * 0.5), yy(3.4)), fill=who.bag_colour
        )
    _draw_shirt(draw, torso, who)
    if who.bag == "shoulder":
        draw.line((cx - half, yy(1.2), cx + half, yy(3.2)), fill=who.bag_colour, width=max(2, int(u * 0.15)))
    arm_w = max(3, int(u * 0.55))
    for side in (-1, 1):
        sx = cx + side * (half - arm_w / 2)
        ex = sx + side * u * 0.25 - side * swing * u * 0.45
        elbow = (sx + (ex - sx) * who.sleeves, yy(1.3 + 2.6 * who.sleeves))
        draw.line((sx, yy(1.3), *elbow), fill=_shade(who.shirt, 0.85), width=arm_w)
        if who.sleeves < 1.0:
            draw.line((*elbow, ex, yy(3.9)), fill=who.skin, width=max(2, arm_w - 2))
    if who.bag in ("handbag", "shoulder"):
        bx = cx + half + u * 0.1
        draw.rectangle((bx, yy(3.1), bx + u * 0.9, yy(4.2)), fill=who.bag_colour)

    # head and hair
    draw.ellipse((cx - u * 0.48, yy(0.1), cx + u * 0.48, yy(1.2)), fill=who.skin)
    if who.hair_style == "long":
        draw.rectangle((cx - u * 0.55, yy(0.35), cx + u * 0.55, yy(1.9)), fill=who.hair)
        draw.ellipse((cx - u * 0.4, yy(0.35), cx + u * 0.4, yy(1.15)), fill=who.skin)
    top_colour = who.bag_colour if who.hair_style == "cap" else who.hair
    draw.chord((cx - u * 0.52, yy(0.0), cx + u * 0.52, yy(0.9)), 180, 360, fill=top_colour)

    img = img.filter(ImageFilter.GaussianBlur(1.2)).resize((size[1], size[0]), Image.Resampling.LANCZOS)
    if rng.random() < 0.5:  # walking the other way
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    pixels = np.asarray(img, dtype=np.float32) * (np.array(cam.gain, dtype=np.float32) * light)
    pixels += rng.normal(0, 4, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def generate_dataset(
    out: str | Path,
    n_people: int = 30,
    n_cameras: int = 3,
    tracklets_per_camera: int = 1,
    frames_per_tracklet: int = 4,
    size: tuple[int, int] = (128, 64),
    seed: int = 0,
    split: str = "bbox_test",
    first_person: int = 1,
) -> Path:
    """Write a MARS-named synthetic set under ``out/split`` and return ``out``.

    Every person appears in every camera, so every image has a cross-camera match.
    """
    out = Path(out)
    rng = np.random.default_rng(seed)
    cameras = [Camera.random(rng) for _ in range(n_cameras)]
    for pid in range(first_person, first_person + n_people):
        who = Identity.random(rng)
        folder = out / split / f"{pid:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        for c, cam in enumerate(cameras, start=1):
            for t in range(1, tracklets_per_camera + 1):
                for f in range(1, frames_per_tracklet + 1):
                    img = render_person(who, cam, rng, size)
                    img.save(folder / f"{pid:04d}C{c}T{t:04d}F{f:03d}.jpg", quality=90)
    return out


def write_mars_info(root: str | Path, query_camera: int = 1) -> Path:
    """Write MARS-style ``info/`` files for a generated set (``bbox_test`` only).

    ``tracks_test_info.mat`` lists every tracklet as [first, last, person, camera] over the
    sorted ``bbox_test`` frame listing; ``query_IDX.mat`` takes each person's first tracklet
    in ``query_camera``. Lets the official MARS protocol run on synthetic data.
    """
    from scipy.io import savemat

    from .layouts import parse_mars_name

    root = Path(root)
    frames = sorted((p for p in (root / "bbox_test").glob("*/*.jpg")), key=lambda p: (p.parent.name, p.name))
    rows: list[list[int]] = []
    last_key = None
    for i, path in enumerate(frames, start=1):
        rec = parse_mars_name(path)
        key = (rec.person, rec.camera, rec.tracklet)
        person = -1 if rec.person == "00-1" else int(rec.person)
        if key != last_key:
            rows.append([i, i, person, rec.camera])
            last_key = key
        else:
            rows[-1][1] = i
    queries, seen = [], set()
    for idx, (_, _, person, cam) in enumerate(rows, start=1):
        if cam == query_camera and person > 0 and person not in seen:
            queries.append(idx)
            seen.add(person)
    info = root / "info"
    info.mkdir(exist_ok=True)
    savemat(info / "tracks_test_info.mat", {"track_test_info": np.array(rows, dtype=np.int32)})
    savemat(info / "query_IDX.mat", {"query_IDX": np.array([queries], dtype=np.uint16)})
    return info
