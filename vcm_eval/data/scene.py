"""Deterministic street-scene-like images with instance masks (the embedded default's pixels).

A scene is sky, a row of buildings with windows, and a road with lane marks, all textured with
low- and high-frequency noise so that a codec has real work to do. Objects (person, car, bus) stand
on the road in perspective: far ones are small and high, near ones large and low, so object sizes
run from about 10 px to most of the image height and every FPN level (strides 4..64) carries
objects. They are painted far to near, so near objects occlude far ones; each instance's mask is
what stays visible.

Everything is drawn from one ``numpy.random.Generator``: the same seed gives the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

# Cityscapes label ids (cityscapesscripts.helpers.labels) of the stuff classes painted here.
ROAD, SIDEWALK, BUILDING, VEGETATION, SKY = 7, 8, 11, 21, 23


@dataclass(frozen=True)
class ObjectClass:
    """An instance class: its name, Cityscapes label id and drawing statistics.

    Attributes:
        name: Cityscapes class name (also the COCO category name).
        cityscapes_id: label id in cityscapesscripts' table (24 person, 26 car, 28 bus).
        frequency: relative frequency among the objects of a scene.
        height_at_bottom: object height in image heights when standing at the bottom row.
        aspect: (min, max) width / height.
    """

    name: str
    cityscapes_id: int
    frequency: float
    height_at_bottom: float
    aspect: tuple[float, float]


CLASSES: tuple[ObjectClass, ...] = (
    ObjectClass("person", 24, 0.4, 0.55, (0.35, 0.5)),
    ObjectClass("car", 26, 0.4, 0.36, (1.7, 2.4)),
    ObjectClass("bus", 28, 0.15, 0.62, (1.8, 2.6)),
)


@dataclass
class Scene:
    """One generated image and its ground truth.

    Attributes:
        image: uint8 [H, W, 3] RGB.
        label_ids: uint8 [H, W] Cityscapes label id of every pixel.
        instance_classes: index into ``CLASSES`` for each instance.
        instance_masks: bool [H, W] visible mask of each instance (same order).
    """

    image: np.ndarray
    label_ids: np.ndarray
    instance_classes: list[int] = field(default_factory=list)
    instance_masks: list[np.ndarray] = field(default_factory=list)


def _noise(rng: np.random.Generator, height: int, width: int, cell: int) -> np.ndarray:
    """Smooth noise in [-1, 1]: a coarse random grid upsampled bilinearly."""
    grid = rng.uniform(-1.0, 1.0, size=(max(2, height // cell + 2), max(2, width // cell + 2)))
    img = Image.fromarray(grid.astype(np.float32), mode="F")
    return np.asarray(img.resize((width, height), Image.Resampling.BILINEAR), dtype=np.float32)


def _texture(rng: np.random.Generator, height: int, width: int, strength: float) -> np.ndarray:
    """Brightness texture [H, W, 1]: coarse + medium smooth noise and fine grain."""
    tex = 0.6 * _noise(rng, height, width, 32) + 0.4 * _noise(rng, height, width, 6)
    tex = tex * strength + rng.normal(0.0, strength * 0.25, size=(height, width))
    return tex[..., None].astype(np.float32)


def _colour(rng: np.random.Generator, base: tuple[int, int, int], spread: int) -> tuple[int, ...]:
    return tuple(int(np.clip(c + rng.integers(-spread, spread + 1), 0, 255)) for c in base)


def _vivid(rng: np.random.Generator) -> tuple[int, ...]:
    """A saturated colour for clothing and car paint."""
    hue = rng.uniform(0, 6)
    ramp = [max(0.0, min(1.0, abs((hue + k) % 6 - 3) - 1)) for k in (0, 4, 2)]
    lo, hi = rng.uniform(20, 70), rng.uniform(150, 240)
    return tuple(int(lo + (hi - lo) * r) for r in ramp)


def _background(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Sky, buildings, sidewalk and road; returns (float RGB, label ids, horizon row)."""
    horizon = int(height * rng.uniform(0.36, 0.48))
    rgb = np.zeros((height, width, 3), np.float32)
    labels = np.full((height, width), ROAD, np.uint8)

    top, bottom = np.array(_colour(rng, (110, 160, 220), 25)), np.array(_colour(rng, (200, 215, 235), 15))
    ramp = np.linspace(0, 1, horizon, dtype=np.float32)[:, None, None]
    rgb[:horizon] = top * (1 - ramp) + bottom * ramp
    labels[:horizon] = SKY

    canvas = Image.new("RGB", (width, height))
    lab = Image.new("L", (width, height), 0)
    draw, draw_lab = ImageDraw.Draw(canvas), ImageDraw.Draw(lab)
    x = int(-rng.integers(0, 40))
    while x < width:
        bw = int(rng.integers(width // 12, width // 4))
        bh = int(horizon * rng.uniform(0.35, 0.95))
        is_tree = rng.uniform() < 0.2
        box = (x, horizon - bh, x + bw, horizon)
        if is_tree:
            colour = _colour(rng, (60, 110, 50), 20)
            draw.ellipse(box, fill=colour)
            draw_lab.ellipse(box, fill=VEGETATION)
        else:
            colour = _colour(rng, (140, 130, 120), 40)
            draw.rectangle(box, fill=colour)
            draw_lab.rectangle(box, fill=BUILDING)
            win = max(3, bw // 8)
            dark = tuple(int(c * 0.55) for c in colour)
            for wy in range(horizon - bh + win, horizon - win, 2 * win):
                for wx in range(x + win // 2, x + bw - win, 2 * win):
                    draw.rectangle((wx, wy, wx + win - 1, wy + win - 1), fill=dark)
        x += bw + int(rng.integers(-10, 15))
    sidewalk = horizon + max(2, int((height - horizon) * 0.06))
    road = _colour(rng, (95, 95, 100), 15)
    draw.rectangle((0, horizon, width, height), fill=_colour(rng, (150, 140, 130), 15))
    draw_lab.rectangle((0, horizon, width, sidewalk), fill=SIDEWALK)
    draw.rectangle((0, sidewalk, width, height), fill=road)
    draw_lab.rectangle((0, sidewalk, width, height), fill=ROAD)
    vanish = width * rng.uniform(0.3, 0.7)
    for lane in (-0.8, 0.0, 0.8):
        for t0 in np.arange(0.05, 1.0, 0.12):
            t1 = t0 + 0.06
            ys = [sidewalk + (height - sidewalk) * t for t in (t0, t1)]
            xs = [vanish + lane * width * t for t in (t0, t1)]
            half = [max(1.0, 6 * t * width / 512) for t in (t0, t1)]
            draw.polygon(
                [
                    (xs[0] - half[0], ys[0]),
                    (xs[0] + half[0], ys[0]),
                    (xs[1] + half[1], ys[1]),
                    (xs[1] - half[1], ys[1]),
                ],
                fill=(225, 225, 215),
            )
    painted = np.asarray(canvas, np.float32)
    lab_arr = np.asarray(lab)
    mask = lab_arr > 0
    rgb[mask] = painted[mask]
    labels[mask] = lab_arr[mask]
    rgb += _texture(rng, height, width, 14.0)
    return rgb, labels, horizon


def _draw_person(draw: ImageDraw.ImageDraw, w: int, h: int, rng: np.random.Generator) -> None:
    skin = _colour(rng, (205, 160, 125), 30)
    shirt, pants = _vivid(rng), _colour(rng, (50, 50, 70), 30)
    draw.ellipse((0.28 * w, 0, 0.72 * w, 0.17 * h), fill=skin)
    draw.rectangle((0.12 * w, 0.17 * h, 0.88 * w, 0.56 * h), fill=shirt)
    draw.rectangle((0.0, 0.2 * h, 0.14 * w, 0.5 * h), fill=shirt)
    draw.rectangle((0.86 * w, 0.2 * h, w, 0.5 * h), fill=shirt)
    draw.rectangle((0.18 * w, 0.56 * h, 0.47 * w, h), fill=pants)
    draw.rectangle((0.53 * w, 0.56 * h, 0.82 * w, h), fill=pants)


def _draw_car(draw: ImageDraw.ImageDraw, w: int, h: int, rng: np.random.Generator) -> None:
    paint = _vivid(rng)
    glass = _colour(rng, (60, 80, 100), 15)
    draw.polygon([(0.22 * w, 0.42 * h), (0.32 * w, 0.02 * h), (0.72 * w, 0.02 * h), (0.84 * w, 0.42 * h)], fill=paint)
    draw.polygon([(0.28 * w, 0.4 * h), (0.36 * w, 0.1 * h), (0.68 * w, 0.1 * h), (0.78 * w, 0.4 * h)], fill=glass)
    draw.rounded_rectangle((0, 0.38 * h, w, 0.84 * h), radius=max(1, int(0.12 * h)), fill=paint)
    for cx in (0.22 * w, 0.78 * w):
        r = 0.16 * h
        draw.ellipse((cx - r, h - 2 * r, cx + r, h), fill=(25, 25, 25))


def _draw_bus(draw: ImageDraw.ImageDraw, w: int, h: int, rng: np.random.Generator) -> None:
    paint = _vivid(rng)
    glass = _colour(rng, (50, 70, 90), 15)
    draw.rounded_rectangle((0, 0, w, 0.9 * h), radius=max(1, int(0.05 * h)), fill=paint)
    n_win = int(rng.integers(4, 8))
    step = w / n_win
    for k in range(n_win):
        draw.rectangle((k * step + 0.12 * step, 0.12 * h, (k + 1) * step - 0.12 * step, 0.45 * h), fill=glass)
    draw.rectangle((0.05 * w, 0.5 * h, 0.15 * w, 0.88 * h), fill=glass)
    for cx in (0.18 * w, 0.82 * w):
        r = 0.1 * h
        draw.ellipse((cx - r, h - 2 * r, cx + r, h), fill=(25, 25, 25))


_PAINTERS = {"person": _draw_person, "car": _draw_car, "bus": _draw_bus}


def _object_patch(cls: ObjectClass, w: int, h: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw one object in its own box; returns (float RGB [h, w, 3], bool mask [h, w])."""
    canvas = Image.new("RGB", (w, h), (0, 0, 0))
    silhouette = Image.new("RGB", (w, h), (0, 0, 0))
    seed = int(rng.integers(0, 2**31))
    _PAINTERS[cls.name](ImageDraw.Draw(canvas), w, h, np.random.default_rng(seed))
    # Same strokes in white give the exact silhouette, whatever colours were drawn.
    white = _WhitePainter(ImageDraw.Draw(silhouette))
    _PAINTERS[cls.name](white, w, h, np.random.default_rng(seed))  # type: ignore[arg-type]
    mask = np.asarray(silhouette)[..., 0] > 0
    shade = 1.0 + 0.25 * np.linspace(0.3, -0.3, h, dtype=np.float32)[:, None, None]
    rgb = np.asarray(canvas, np.float32) * shade + _texture(rng, h, w, 8.0)
    return rgb, mask


class _WhitePainter:
    """ImageDraw stand-in that paints every shape white (to get an object's silhouette)."""

    def __init__(self, draw: ImageDraw.ImageDraw) -> None:
        self._draw = draw

    def __getattr__(self, name: str):
        method = getattr(self._draw, name)

        def white(*args, **kwargs):
            kwargs["fill"] = (255, 255, 255)
            return method(*args, **kwargs)

        return white


def generate_scene(
    rng: np.random.Generator,
    *,
    height: int,
    width: int,
    objects: tuple[int, int],
    min_visible_pixels: int,
) -> Scene:
    """Draw one scene.

    Args:
        rng: the only source of randomness (seed it per image for determinism).
        height, width: image size in pixels.
        objects: (min, max) number of objects placed (inclusive).
        min_visible_pixels: instances with fewer visible pixels are dropped from the ground
            truth and painted over with the background, so no unlabelled object remains.
    """
    rgb, labels, horizon = _background(rng, height, width)
    background, background_labels = rgb.copy(), labels.copy()
    instance_map = np.full((height, width), -1, np.int32)
    freqs = np.array([c.frequency for c in CLASSES])
    n_obj = int(rng.integers(objects[0], objects[1] + 1))
    placed: list[tuple[float, int]] = []
    for _ in range(n_obj):
        # depth**1.5 puts more objects far away (small), as in real street scenes.
        placed.append((0.02 + 1.06 * float(rng.uniform()) ** 1.5, int(rng.choice(len(CLASSES), p=freqs / freqs.sum()))))
    placed.sort()  # far (small depth t) first: near objects occlude far ones
    classes: list[int] = []
    for depth, cls_idx in placed:
        cls = CLASSES[cls_idx]
        bottom = horizon + (height - horizon) * depth
        size = height * cls.height_at_bottom * (0.06 + 0.94 * depth) * rng.uniform(0.85, 1.15)
        obj_h = max(6, int(round(size)))  # noqa: RUF046 - numpy scalars round to floats
        obj_w = max(3, int(round(obj_h * rng.uniform(*cls.aspect))))  # noqa: RUF046
        x0 = int(rng.uniform(-0.1 * obj_w, width - 0.9 * obj_w))
        y0 = int(round(bottom - obj_h))  # noqa: RUF046
        patch, mask = _object_patch(cls, obj_w, obj_h, rng)
        ys, xs = slice(max(0, y0), min(height, y0 + obj_h)), slice(max(0, x0), min(width, x0 + obj_w))
        py, px = slice(ys.start - y0, ys.stop - y0), slice(xs.start - x0, xs.stop - x0)
        if ys.stop <= ys.start or xs.stop <= xs.start:
            continue
        m = mask[py, px]
        rgb[ys, xs][m] = patch[py, px][m]
        labels[ys, xs][m] = cls.cityscapes_id
        instance_map[ys, xs][m] = len(classes)
        classes.append(cls_idx)

    scene = Scene(image=np.empty(0), label_ids=labels)
    for idx, cls_idx in enumerate(classes):
        visible = instance_map == idx
        if visible.sum() < min_visible_pixels:
            rgb[visible] = background[visible]
            labels[visible] = background_labels[visible]
            continue
        scene.instance_classes.append(cls_idx)
        scene.instance_masks.append(visible)
    scene.image = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    return scene
