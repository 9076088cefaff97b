"""Procedural drawing for the synthetic suite: shapes, fill textures and scene backgrounds.

Why procedural scenes: the labels must be learnable from pixels (so a pretrained backbone measurably beats
a random one, and a detector can learn the boxes) while no real image can be shipped or downloaded.
Objects are polygons (so COCO masks and VOC boxes are exact), filled with a texture, drawn on a scene.
Everything is drawn at 2x and box-filtered down, which anti-aliases edges; all randomness comes from the
`numpy.random.Generator` passed in, so a seed gives the same pixels (and JPEG bytes) every time.
"""

from __future__ import annotations

import colorsys
import functools
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

SUPERSAMPLE = 2


# ----------------------------------------------------------------------------------------------- shapes
def _regular(n: int, phase: float = 0.0) -> np.ndarray:
    a = phase + 2 * math.pi * np.arange(n) / n
    return np.stack([np.cos(a), np.sin(a)], 1)


def _star(n: int = 5, inner: float = 0.45) -> np.ndarray:
    a = -math.pi / 2 + math.pi * np.arange(2 * n) / n
    r = np.where(np.arange(2 * n) % 2 == 0, 1.0, inner)
    return np.stack([r * np.cos(a), r * np.sin(a)], 1)


def _heart() -> np.ndarray:
    t = np.linspace(0, 2 * math.pi, 40, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    return np.stack([x, y + 2.5], 1) / 16.0


def _crescent() -> np.ndarray:
    outer = np.linspace(math.radians(70), math.radians(290), 24)
    inner = np.linspace(math.radians(290), math.radians(70), 18)
    o = np.stack([np.cos(outer), np.sin(outer)], 1)
    i = np.stack([0.45 + 0.75 * np.cos(inner), 0.75 * np.sin(inner) * 1.2], 1)
    return np.concatenate([o, i])


SHAPES: dict[str, np.ndarray] = {
    "circle": _regular(32),
    "square": _regular(4, math.pi / 4) * 1.1,
    "triangle": _regular(3, -math.pi / 2) * 1.1,
    "pentagon": _regular(5, -math.pi / 2),
    "hexagon": _regular(6),
    "octagon": _regular(8, math.pi / 8),
    "star": _star(5, 0.45),
    "cross": np.array([[-.33, -1], [.33, -1], [.33, -.33], [1, -.33], [1, .33], [.33, .33], [.33, 1], [-.33, 1],
                       [-.33, .33], [-1, .33], [-1, -.33], [-.33, -.33]]),
    "diamond": np.array([[0, -1], [.6, 0], [0, 1], [-.6, 0]]),
    "crescent": _crescent(),
    "heart": _heart(),
    "arrow": np.array([[-1, -.3], [.15, -.3], [.15, -.75], [1, 0], [.15, .75], [.15, .3], [-1, .3]]),
    "lshape": np.array([[-.75, -1], [-.15, -1], [-.15, .4], [.75, .4], [.75, 1], [-.75, 1]]),
    "tshape": np.array([[-1, -1], [1, -1], [1, -.45], [.3, -.45], [.3, 1], [-.3, 1], [-.3, -.45], [-1, -.45]]),
    "ellipse": _regular(32) * np.array([1.0, 0.5]),
    "trapezoid": np.array([[-1, .6], [1, .6], [.5, -.6], [-.5, -.6]]),
    "hourglass": np.array([[-.8, -1], [.8, -1], [.15, 0], [.8, 1], [-.8, 1], [-.15, 0]]),
    "semicircle": np.concatenate([_regular(32)[16:] * 1.0, [[1.0, 0.0]]]) + np.array([0, .4]),
}  # fmt: skip


def place_shape(
    shape: str, cx: float, cy: float, radius: float, angle: float = 0.0, aspect: float = 1.0
) -> np.ndarray:
    """The shape's polygon (K x 2, pixel coordinates) rotated by `angle` (radians) and scaled to `radius`."""
    v = SHAPES[shape] * np.array([aspect, 1.0])
    c, s = math.cos(angle), math.sin(angle)
    v = v @ np.array([[c, s], [-s, c]])
    return v * radius + np.array([cx, cy])


# ----------------------------------------------------------------------------------------------- colour
def hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0), 1), min(max(v, 0), 1)), dtype=np.float32)


def random_colour(rng: np.random.Generator) -> np.ndarray:
    return hsv(rng.random(), rng.uniform(0.5, 1.0), rng.uniform(0.45, 1.0))


def jitter(colour: np.ndarray, rng: np.random.Generator, amount: float = 0.06) -> np.ndarray:
    return np.clip(colour + rng.normal(0, amount, 3), 0, 1).astype(np.float32)


# ----------------------------------------------------------------------------------------------- textures
TEXTURES = ("solid", "stripes", "checker", "dots", "rings", "gradient")


def texture(kind: str, X: np.ndarray, Y: np.ndarray, c1, c2, center, period: float, angle: float) -> np.ndarray:
    """A 3 x H x W fill of two colours (channel-first: numpy broadcasts fast over the big trailing axes);
    `period` in final-image pixels."""
    ca, sa = math.cos(angle), math.sin(angle)
    u = (X - center[0]) * ca + (Y - center[1]) * sa
    w = -(X - center[0]) * sa + (Y - center[1]) * ca
    if kind == "solid":
        m = np.zeros_like(X)
    elif kind == "stripes":
        m = (np.sin(2 * math.pi * u / period) > 0).astype(np.float32)
    elif kind == "checker":
        m = ((np.floor(u / period) + np.floor(w / period)) % 2).astype(np.float32)
    elif kind == "dots":
        du = (u / period) % 1.0 - 0.5
        dw = (w / period) % 1.0 - 0.5
        m = (du**2 + dw**2 < 0.09).astype(np.float32)
    elif kind == "rings":
        m = (np.sin(2 * math.pi * np.hypot(u, w) / period) > 0).astype(np.float32)
    elif kind == "gradient":
        m = np.clip(u / (4 * period) + 0.5, 0, 1)
    else:
        raise ValueError(kind)
    return mix(c1, c2, m)


def col(colour) -> np.ndarray:
    """An RGB triple as a 3 x 1 x 1 array, to broadcast over a channel-first image."""
    return np.asarray(colour, np.float32).reshape(3, 1, 1)


def mix(c1, c2, t: np.ndarray) -> np.ndarray:
    """3 x H x W blend: c1 where t = 0, c2 where t = 1."""
    a = col(c1)
    return a + (col(c2) - a) * t[None]


# ----------------------------------------------------------------------------------------------- canvas
class Canvas:
    """An image being drawn at SUPERSAMPLE x resolution, channel-first floats in [0, 1] (`pixels`, 3 x H x W);
    coordinates in the API are final-image pixels."""

    def __init__(self, width: int, height: int):
        self.width, self.height = width, height
        self.W, self.H = width * SUPERSAMPLE, height * SUPERSAMPLE
        self.X, self.Y = _grid(self.W, self.H)  # final-pixel coordinates of each supersampled pixel (read-only)
        self.pixels = np.zeros((3, self.H, self.W), np.float32)

    def polygon_mask(self, poly: np.ndarray) -> np.ndarray:
        """Bool mask (supersampled grid) of a polygon given in final-image coordinates."""
        m = Image.new("L", (self.W, self.H), 0)
        ImageDraw.Draw(m).polygon([tuple(p) for p in (poly * SUPERSAMPLE).tolist()], fill=255)
        return np.asarray(m) > 127

    def fill(self, mask: np.ndarray, colours: np.ndarray) -> None:
        """Paint `colours` (3 x H x W or 3 x H x 1 supersampled, or one RGB triple) where `mask`."""
        colours = col(colours) if np.ndim(colours) == 1 else np.asarray(colours, np.float32)
        np.copyto(self.pixels, colours, where=mask[None])

    def paint(self, colours) -> None:
        """Cover the whole canvas (a background)."""
        self.pixels[:] = col(colours) if np.ndim(colours) == 1 else colours

    def rect(self, x0: float, y0: float, x1: float, y1: float, colour) -> None:
        """Fill the pixels whose centres lie in [x0, x1) x [y0, y1) (final-image coordinates)."""
        i0, i1 = (max(0, min(n, math.ceil(v * SUPERSAMPLE - 0.5))) for v, n in ((y0, self.H), (y1, self.H)))
        j0, j1 = (max(0, min(n, math.ceil(v * SUPERSAMPLE - 0.5))) for v, n in ((x0, self.W), (x1, self.W)))
        self.pixels[:, i0:i1, j0:j1] = col(colour)

    def final_mask(self, mask: np.ndarray) -> np.ndarray:
        """Supersampled bool mask -> final-resolution bool mask (pixel at least half covered)."""
        s = SUPERSAMPLE
        return mask.reshape(self.height, s, self.width, s).mean(axis=(1, 3)) >= 0.5

    def image(self, rng: np.random.Generator, noise: float = 0.02) -> Image.Image:
        u8 = (np.clip(self.pixels, 0, 1) * 255 + 0.5).astype(np.uint8)
        big = Image.fromarray(np.ascontiguousarray(u8.transpose(1, 2, 0)), "RGB")
        small = np.asarray(big.resize((self.width, self.height), Image.BOX), np.float32)
        if noise:
            small = small + rng.normal(0, noise * 255, small.shape).astype(np.float32)
        return Image.fromarray(np.clip(small + 0.5, 0, 255).astype(np.uint8), "RGB")


@functools.lru_cache(maxsize=16)
def _grid(W: int, H: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float32)
    X, Y = (xs + 0.5) / SUPERSAMPLE, (ys + 0.5) / SUPERSAMPLE
    X.flags.writeable = False
    Y.flags.writeable = False
    return X, Y


def smooth_noise(rng: np.random.Generator, W: int, H: int, cells: int = 4) -> np.ndarray:
    """Low-frequency noise in [0, 1] (a coarse random grid upsampled bicubically)."""
    coarse = (rng.random((cells, cells)) * 255).astype(np.uint8)
    return np.asarray(Image.fromarray(coarse, "L").resize((W, H), Image.BICUBIC), np.float32) / 255.0


def vgradient(cv: Canvas, top, bottom, y0: float = 0.0, y1: float | None = None) -> np.ndarray:
    """3 x H x 1 vertical blend from `top` (at y0) to `bottom` (at y1); broadcasts over the columns."""
    y1 = cv.height if y1 is None else y1
    return mix(top, bottom, np.clip((cv.Y[:, :1] - y0) / max(y1 - y0, 1e-6), 0, 1))


# ----------------------------------------------------------------------------------------------- scenes
def _sky(cv: Canvas, rng, horizon: float) -> None:
    cv.paint(vgradient(cv, jitter(hsv(0.58, 0.55, 0.85), rng), jitter(hsv(0.56, 0.25, 1.0), rng), 0, horizon))


def scene_beach(cv: Canvas, rng) -> None:
    h = cv.height * rng.uniform(0.3, 0.45)
    _sky(cv, rng, h)
    sea = (cv.Y >= h) & (cv.Y < h + cv.height * 0.18)
    waves = texture("stripes", cv.X, cv.Y, jitter(hsv(0.58, 0.8, 0.65), rng), jitter(hsv(0.55, 0.5, 0.85), rng),
                    (0, h), cv.height * 0.06, math.pi / 2)  # fmt: skip
    cv.fill(sea, waves)
    sand = cv.Y >= h + cv.height * 0.18
    cv.fill(sand, vgradient(cv, jitter(hsv(0.12, 0.35, 0.95), rng), jitter(hsv(0.1, 0.45, 0.8), rng)))


def scene_forest_path(cv: Canvas, rng) -> None:
    cv.paint(mix(jitter(hsv(0.3, 0.7, 0.25), rng), jitter(hsv(0.27, 0.6, 0.6), rng), smooth_noise(rng, cv.W, cv.H, 6)))
    for _ in range(rng.integers(3, 6)):
        x = rng.uniform(0, cv.width)
        wdt = cv.width * rng.uniform(0.03, 0.07)
        cv.rect(x, 0, x + wdt, cv.height * rng.uniform(0.6, 1.0), jitter(hsv(0.08, 0.6, 0.3), rng))
    path = np.array([[cv.width * 0.45, cv.height * 0.55], [cv.width * 0.55, cv.height * 0.55],
                     [cv.width * 0.8, cv.height], [cv.width * 0.2, cv.height]])  # fmt: skip
    cv.fill(cv.polygon_mask(path), jitter(hsv(0.1, 0.4, 0.7), rng))


def scene_desert(cv: Canvas, rng) -> None:
    h = cv.height * rng.uniform(0.3, 0.5)
    cv.paint(vgradient(cv, jitter(hsv(0.1, 0.2, 1.0), rng), jitter(hsv(0.08, 0.35, 0.95), rng), 0, h))
    phase, amp = rng.uniform(0, 6.3), cv.height * 0.06
    dune = cv.Y >= h + amp * np.sin(cv.X / cv.width * 6 + phase)
    ripples = texture("stripes", cv.X, cv.Y, jitter(hsv(0.08, 0.7, 0.85), rng), jitter(hsv(0.07, 0.75, 0.7), rng),
                      (0, 0), cv.height * 0.08, math.pi / 2 + rng.uniform(-0.3, 0.3))  # fmt: skip
    cv.fill(dune, ripples)


def scene_ocean(cv: Canvas, rng) -> None:
    h = cv.height * rng.uniform(0.15, 0.3)
    _sky(cv, rng, h)
    t = np.sin(cv.Y / cv.height * 40 + np.sin(cv.X / cv.width * 8 + rng.uniform(0, 6.3)) * 2) * 0.5 + 0.5
    sea = mix(jitter(hsv(0.6, 0.85, 0.45), rng), jitter(hsv(0.55, 0.6, 0.75), rng), t)
    cv.fill(cv.Y >= h, sea)


def scene_highway(cv: Canvas, rng) -> None:
    h = cv.height * rng.uniform(0.3, 0.45)
    _sky(cv, rng, h)
    cv.fill(cv.Y >= h, jitter(hsv(0.3, 0.5, 0.5), rng))
    vx = cv.width * rng.uniform(0.35, 0.65)
    road = np.array([[vx - 2, h], [vx + 2, h], [cv.width * 0.95, cv.height], [cv.width * 0.05, cv.height]])
    cv.fill(cv.polygon_mask(road), jitter(hsv(0.0, 0.0, 0.35), rng))
    for k in range(4):
        t0, t1 = (k + 0.2) / 4, (k + 0.6) / 4
        y0, y1 = h + (cv.height - h) * t0, h + (cv.height - h) * t1
        w0, w1 = 0.5 + 2 * t0, 0.5 + 2 * t1
        xb = cv.width / 2
        dash = np.array([[vx + (xb - vx) * t0 - w0 / 2, y0], [vx + (xb - vx) * t0 + w0 / 2, y0],
                         [vx + (xb - vx) * t1 + w1 / 2, y1], [vx + (xb - vx) * t1 - w1 / 2, y1]])  # fmt: skip
        cv.fill(cv.polygon_mask(dash), np.array([0.95, 0.95, 0.9], np.float32))


def scene_bedroom(cv: Canvas, rng) -> None:
    h = cv.height * rng.uniform(0.55, 0.7)
    cv.paint(jitter(hsv(rng.uniform(0.05, 0.15), 0.25, 0.9), rng))
    floor = texture("stripes", cv.X, cv.Y, jitter(hsv(0.08, 0.6, 0.55), rng), jitter(hsv(0.08, 0.6, 0.45), rng),
                    (0, 0), cv.width * 0.08, 0.0)  # fmt: skip
    cv.fill(cv.Y >= h, floor)
    x0 = cv.width * rng.uniform(0.05, 0.4)
    cv.rect(x0, h - cv.height * 0.2, x0 + cv.width * 0.55, h + cv.height * 0.1, random_colour(rng))
    cv.rect(x0, h - cv.height * 0.27, x0 + cv.width * 0.15, h - cv.height * 0.2, np.array([0.95, 0.95, 0.95], np.float32))


def scene_skyscraper(cv: Canvas, rng) -> None:
    _sky(cv, rng, cv.height)
    x = rng.uniform(-0.1, 0.1) * cv.width
    while x < cv.width:
        w = cv.width * rng.uniform(0.15, 0.28)
        top = cv.height * rng.uniform(0.05, 0.45)
        body = (cv.X >= x) & (cv.X < x + w) & (cv.Y >= top)
        windows = texture("checker", cv.X, cv.Y, jitter(hsv(0.6, 0.1, 0.45), rng), jitter(hsv(0.14, 0.3, 0.9), rng),
                          (x, top), cv.width * 0.03, 0.0)  # fmt: skip
        cv.fill(body, windows)
        x += w + cv.width * rng.uniform(0.0, 0.06)


def scene_corn_field(cv: Canvas, rng) -> None:
    h = cv.height * rng.uniform(0.2, 0.35)
    _sky(cv, rng, h)
    rows = texture("stripes", cv.X, cv.Y, jitter(hsv(0.15, 0.8, 0.85), rng), jitter(hsv(0.22, 0.7, 0.55), rng),
                   (0, 0), cv.width * rng.uniform(0.05, 0.09), rng.uniform(-0.2, 0.2))  # fmt: skip
    cv.fill(cv.Y >= h, rows)


def scene_mountain(cv: Canvas, rng) -> None:
    _sky(cv, rng, cv.height * 0.7)
    for _ in range(rng.integers(2, 4)):
        px, py = cv.width * rng.uniform(0.1, 0.9), cv.height * rng.uniform(0.1, 0.4)
        half = cv.width * rng.uniform(0.3, 0.5)
        peak = np.array([[px, py], [px + half, cv.height * 0.8], [px - half, cv.height * 0.8]])
        cv.fill(cv.polygon_mask(peak), jitter(hsv(0.6, 0.12, rng.uniform(0.35, 0.55)), rng))
        cap = np.array([[px, py], [px + half * 0.25, py + (cv.height * 0.8 - py) * 0.25],
                        [px - half * 0.25, py + (cv.height * 0.8 - py) * 0.25]])  # fmt: skip
        cv.fill(cv.polygon_mask(cap), np.array([0.97, 0.97, 1.0], np.float32))
    cv.fill(cv.Y >= cv.height * 0.8, jitter(hsv(0.3, 0.55, 0.45), rng))


def scene_kitchen(cv: Canvas, rng) -> None:
    tiles = texture("checker", cv.X, cv.Y, jitter(hsv(0, 0, 0.95), rng), jitter(hsv(rng.random(), 0.4, 0.8), rng),
                    (0, 0), cv.width * 0.1, 0.0)  # fmt: skip
    cv.paint(tiles)
    h = cv.height * rng.uniform(0.5, 0.65)
    cv.rect(0, h, cv.width, h + cv.height * 0.06, jitter(hsv(0.07, 0.5, 0.45), rng))
    cv.rect(0, h + cv.height * 0.06, cv.width, cv.height, jitter(hsv(0.08, 0.4, 0.7), rng))
    for k in range(4):
        x0 = cv.width * (0.03 + 0.25 * k)
        cv.rect(x0, h + cv.height * 0.12, x0 + cv.width * 0.2, cv.height * 0.95, jitter(hsv(0.08, 0.45, 0.6), rng))


def scene_snowfield(cv: Canvas, rng) -> None:
    h = cv.height * rng.uniform(0.25, 0.45)
    cv.paint(vgradient(cv, jitter(hsv(0.6, 0.15, 0.8), rng), jitter(hsv(0.6, 0.05, 0.95), rng), 0, h))
    snow = mix((0.97, 0.98, 1.0), hsv(0.6, 0.3, 0.8), 0.2 * smooth_noise(rng, cv.W, cv.H, 5))
    cv.fill(cv.Y >= h, snow)


def scene_parking_lot(cv: Canvas, rng) -> None:
    cv.paint(jitter(hsv(0, 0, 0.4), rng))
    thin = np.sin(2 * math.pi * cv.X / (cv.width * rng.uniform(0.15, 0.22))) > 0.93
    cv.fill(thin, np.array([0.95, 0.95, 0.95], np.float32))
    cv.rect(0, cv.height * 0.48, cv.width, cv.height * 0.52, np.array([0.95, 0.9, 0.3], np.float32))


SCENES = {
    "b/beach": scene_beach,
    "b/bedroom": scene_bedroom,
    "c/corn_field": scene_corn_field,
    "d/desert/sand": scene_desert,
    "f/forest_path": scene_forest_path,
    "h/highway": scene_highway,
    "k/kitchen": scene_kitchen,
    "m/mountain": scene_mountain,
    "o/ocean": scene_ocean,
    "p/parking_lot": scene_parking_lot,
    "s/skyscraper": scene_skyscraper,
    "s/snowfield": scene_snowfield,
}


def random_scene(cv: Canvas, rng: np.random.Generator, mute: float = 0.0) -> str:
    """Draw a random scene as background; `mute` in [0, 1] blends it towards its mean grey so that the
    objects drawn over it, which carry the labels, stand out."""
    name = list(SCENES)[rng.integers(len(SCENES))]
    SCENES[name](cv, rng)
    if mute:
        grey = cv.pixels.mean()
        cv.pixels *= 1 - mute
        cv.pixels += mute * grey
    return name


# ----------------------------------------------------------------------------------------------- objects
@dataclass(frozen=True)
class Look:
    """How one class's objects look: shape, fill texture, and (optionally) fixed colours."""

    shape: str
    texture: str
    hue1: float | None = None  # None: a random colour per object
    hue2: float | None = None
    aspect: float = 1.0
    upright: bool = False  # small rotations only (VOC/COCO objects stand upright)


def colours_for(look: Look, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    if look.hue1 is None:
        c1 = random_colour(rng)
        h, s, v = colorsys.rgb_to_hsv(*c1.tolist())
        c2 = hsv(h + rng.uniform(0.35, 0.65), rng.uniform(0.3, 1.0), 1.3 - v)
        return c1, c2
    c1 = hsv(look.hue1 + rng.normal(0, 0.02), rng.uniform(0.6, 0.95), rng.uniform(0.6, 0.95))
    h2 = look.hue1 + 0.5 if look.hue2 is None else look.hue2
    c2 = hsv(h2 + rng.normal(0, 0.02), rng.uniform(0.5, 0.9), rng.uniform(0.15, 0.45) if look.hue2 is None else 0.95)
    return c1, c2


def object_outline(look: Look, rng: np.random.Generator, radius: float) -> np.ndarray:
    """A random pose (rotation, aspect jitter) of the look's shape, centred on (0, 0)."""
    angle = rng.normal(0, 0.2) if look.upright else rng.uniform(0, 2 * math.pi)
    return place_shape(look.shape, 0.0, 0.0, radius, angle, look.aspect * rng.uniform(0.85, 1.15))


def paint_object(cv: Canvas, look: Look, rng: np.random.Generator, poly: np.ndarray, radius: float) -> np.ndarray:
    """Fill a polygon with the look's texture and colours; returns its supersampled mask."""
    mask = cv.polygon_mask(poly)
    c1, c2 = colours_for(look, rng)
    period = max(radius * rng.uniform(0.35, 0.55), 1.5)
    angle = rng.uniform(0, math.pi)
    centre = poly.mean(0)
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if rows.size:  # texture only the object's bounding box
        r, c = slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)
        fill = texture(look.texture, cv.X[r, c], cv.Y[r, c], c1, c2, centre, period, angle)
        np.copyto(cv.pixels[:, r, c], fill, where=mask[None, r, c])
    return mask


def draw_object(
    cv: Canvas, look: Look, rng: np.random.Generator, cx: float, cy: float, radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one object centred at (cx, cy); returns its polygon (final pixel coords) and supersampled mask."""
    poly = object_outline(look, rng, radius) + np.array([cx, cy])
    return poly, paint_object(cv, look, rng, poly, radius)
