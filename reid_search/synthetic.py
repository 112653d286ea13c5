"""Synthetic pedestrians for the demo and the tests: no download, fully reproducible.

Each identity is a procedural figure with its own clothing colours and patterns (shirt
solid/striped/checked/two-tone, trousers or shorts or skirt, shoes, hair, an optional
bag) and body proportions. Each camera has its own background and lighting (colour cast,
brightness); each frame jitters pose (arm and leg swing), scale and position and adds
sensor noise. Files are written in MARS naming, ``bbox_test/PPPP/PPPPCcTttttFfff.jpg``,
so every layout-aware part of the engine runs on them.

Usage::

    >>> from reid_search.synthetic import generate_dataset
    >>> root = generate_dataset("/tmp/synth", n_people=20, n_cameras=3)   # doctest: +SKIP
    >>> sorted(p.name for p in root.iterdir())                            # doctest: +SKIP
    ['bbox_test']
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

PATTERNS = ("solid", "hstripes", "vstripes", "checks", "twotone")
LOWER = ("trousers", "shorts", "skirt")
BAGS = ("none", "none", "backpack", "handbag")


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    """A saturated-or-neutral clothing colour."""
    if rng.random() < 0.3:
        v = int(rng.integers(20, 235))
        return (v, v, v)
    hue = rng.random()
    sat = rng.uniform(0.4, 1.0)
    val = rng.uniform(0.3, 1.0)
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
    shirt: tuple[int, int, int]
    shirt_pattern: str
    pattern_colour: tuple[int, int, int]
    lower: str
    lower_colour: tuple[int, int, int]
    shoes: tuple[int, int, int]
    bag: str
    bag_colour: tuple[int, int, int]
    height: float  # fraction of the frame
    girth: float

    @classmethod
    def random(cls, rng: np.random.Generator) -> Identity:
        skin_v = rng.uniform(0.35, 1.0)
        return cls(
            skin=(int(230 * skin_v), int(190 * skin_v), int(160 * skin_v)),
            hair=_colour(rng) if rng.random() < 0.2 else tuple(int(x) for x in rng.integers(10, 120, 3)),
            shirt=_colour(rng),
            shirt_pattern=str(rng.choice(PATTERNS)),
            pattern_colour=_colour(rng),
            lower=str(rng.choice(LOWER)),
            lower_colour=_colour(rng),
            shoes=_colour(rng),
            bag=str(rng.choice(BAGS)),
            bag_colour=_colour(rng),
            height=float(rng.uniform(0.82, 0.95)),
            girth=float(rng.uniform(0.8, 1.25)),
        )


@dataclass(frozen=True)
class Camera:
    """Background and lighting of one synthetic camera."""

    wall: tuple[int, int, int]
    floor: tuple[int, int, int]
    gain: tuple[float, float, float]  # per-channel colour cast and brightness

    @classmethod
    def random(cls, rng: np.random.Generator) -> Camera:
        brightness = rng.uniform(0.75, 1.2)
        cast = rng.uniform(0.88, 1.12, 3)
        return cls(
            wall=tuple(int(x) for x in rng.integers(60, 200, 3)),
            floor=tuple(int(x) for x in rng.integers(40, 160, 3)),
            gain=tuple(float(brightness * c) for c in cast),
        )


def _draw_shirt(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], who: Identity) -> None:
    x0, y0, x1, y1 = box
    draw.rectangle(box, fill=who.shirt)
    step = max(2, (y1 - y0) // 6)
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


def render_person(
    who: Identity, cam: Camera, rng: np.random.Generator, size: tuple[int, int] = (128, 64)
) -> Image.Image:
    """Draw one frame of ``who`` seen by ``cam`` at ``size`` = (height, width)."""
    h, w = size
    img = Image.new("RGB", (w, h), cam.wall)
    draw = ImageDraw.Draw(img)
    horizon = int(h * rng.uniform(0.55, 0.7))
    draw.rectangle((0, horizon, w, h), fill=cam.floor)
    for _ in range(3):  # background clutter
        x, y = int(rng.integers(0, w)), int(rng.integers(0, horizon))
        tone = tuple(int(c * rng.uniform(0.7, 1.3)) for c in cam.wall)
        draw.rectangle((x, y, x + int(rng.integers(4, w // 2)), y + int(rng.integers(4, h // 4))), fill=tone)

    scale = who.height * rng.uniform(0.92, 1.04)
    body_h = h * scale
    cx = w / 2 + rng.uniform(-0.08, 0.08) * w
    top = h - body_h - h * rng.uniform(0.0, 0.04)
    u = body_h / 8.0  # head-height unit
    half = u * 0.95 * who.girth
    swing = rng.uniform(-1.0, 1.0)

    def yy(f: float) -> int:
        return int(top + f * u)

    # legs / lower garment
    hip_y, foot_y = yy(4.0), yy(7.8)
    for side in (-1, 1):
        dx = side * half * 0.45 + side * swing * u * 0.5
        leg_colour = who.lower_colour if who.lower == "trousers" else who.skin
        draw.line(
            (cx + side * half * 0.45, hip_y, cx + dx, foot_y), fill=leg_colour, width=max(2, int(u * 0.55))
        )
        draw.ellipse(
            (cx + dx - u * 0.35, foot_y - u * 0.2, cx + dx + u * 0.35, foot_y + u * 0.2), fill=who.shoes
        )
    if who.lower == "shorts":
        draw.rectangle((cx - half, hip_y, cx + half, yy(5.3)), fill=who.lower_colour)
    elif who.lower == "skirt":
        draw.polygon(
            [(cx - half, hip_y), (cx + half, hip_y), (cx + half * 1.4, yy(6.0)), (cx - half * 1.4, yy(6.0))],
            fill=who.lower_colour,
        )
    else:
        draw.rectangle((cx - half, hip_y, cx + half, yy(4.6)), fill=who.lower_colour)

    # torso, arms, bag
    torso = (int(cx - half), yy(1.3), int(cx + half), yy(4.1))
    if who.bag == "backpack":
        draw.rectangle(
            (torso[0] - int(u * 0.3), yy(1.5), torso[0] + int(u * 0.4), yy(3.6)), fill=who.bag_colour
        )
    _draw_shirt(draw, torso, who)
    for side in (-1, 1):
        sx = cx + side * half
        draw.line(
            (sx, yy(1.5), sx + side * u * 0.3 - side * swing * u * 0.4, yy(3.9)),
            fill=who.shirt,
            width=max(2, int(u * 0.4)),
        )
    if who.bag == "handbag":
        bx = cx + half + u * 0.2
        draw.rectangle((bx, yy(3.4), bx + u * 0.8, yy(4.3)), fill=who.bag_colour)

    # head and hair
    draw.ellipse((cx - u * 0.45, yy(0.2), cx + u * 0.45, yy(1.25)), fill=who.skin)
    draw.chord((cx - u * 0.47, yy(0.1), cx + u * 0.47, yy(0.95)), 180, 360, fill=who.hair)

    pixels = np.asarray(img, dtype=np.float32) * np.array(cam.gain, dtype=np.float32)
    pixels += rng.normal(0, 6, pixels.shape)
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
