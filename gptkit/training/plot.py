"""loss.png: train and val loss against step, drawn with numpy and written as a PNG with zlib.

No matplotlib (not a dependency): a white canvas, axes with labelled ticks in a 3x5 pixel font, and one
polyline per series. Enough to see a run's curve at a glance; metrics.jsonl has the numbers.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from gptkit.files import atomic_write_bytes

# 3x5 glyphs, rows top to bottom, 3 bits each (4 = left pixel).
_FONT = {
    "0": (7, 5, 5, 5, 7), "1": (2, 6, 2, 2, 7), "2": (7, 1, 7, 4, 7), "3": (7, 1, 7, 1, 7), "4": (5, 5, 7, 1, 1),
    "5": (7, 4, 7, 1, 7), "6": (7, 4, 7, 5, 7), "7": (7, 1, 1, 1, 1), "8": (7, 5, 7, 5, 7), "9": (7, 5, 7, 1, 7),
    ".": (0, 0, 0, 0, 2), "k": (4, 5, 6, 5, 5), "-": (0, 0, 7, 0, 0), " ": (0, 0, 0, 0, 0),
    "t": (2, 7, 2, 2, 3), "r": (0, 6, 5, 4, 4), "a": (0, 3, 5, 5, 3), "i": (2, 0, 2, 2, 2), "n": (0, 6, 5, 5, 5),
    "v": (0, 5, 5, 5, 2), "l": (6, 2, 2, 2, 7), "o": (0, 7, 5, 5, 7), "s": (0, 3, 6, 3, 6), "e": (0, 7, 7, 4, 7),
    "p": (0, 7, 5, 7, 4),
}
COLORS = {"train_loss": (31, 119, 180), "val_loss": (255, 127, 14)}
W, H, LEFT, RIGHT, TOP, BOTTOM, SCALE = 720, 440, 70, 20, 20, 50, 2


def png_bytes(rgb: np.ndarray) -> bytes:
    """An (H, W, 3) uint8 image as PNG bytes (8-bit RGB, no filtering)."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def _text(img: np.ndarray, x: int, y: int, s: str, color=(0, 0, 0)) -> None:
    for ch in s:
        for row, bits in enumerate(_FONT.get(ch, _FONT[" "])):
            for col in range(3):
                if bits & (4 >> col):
                    y0, x0 = y + row * SCALE, x + col * SCALE
                    img[max(y0, 0) : y0 + SCALE, max(x0, 0) : x0 + SCALE] = color
        x += 4 * SCALE


def _line(img: np.ndarray, x0: float, y0: float, x1: float, y1: float, color, width: int = 2) -> None:
    n = int(max(abs(x1 - x0), abs(y1 - y0))) + 1
    xs = np.rint(np.linspace(x0, x1, n)).astype(int)
    ys = np.rint(np.linspace(y0, y1, n)).astype(int)
    for d in range(width):
        img[np.clip(ys + d, 0, img.shape[0] - 1), np.clip(xs, 0, img.shape[1] - 1)] = color


def _fmt_loss(v: float) -> str:
    return f"{v:.2f}" if v < 10 else f"{v:.0f}"


def _fmt_step(s: int) -> str:
    """Example: 0 -> "0", 750 -> "750", 1075 -> "1.1k", 43000 -> "43k"."""
    if s < 1000:
        return str(s)
    return f"{s / 1000:.1f}".rstrip("0").rstrip(".") + "k" if s < 10_000 else f"{s // 1000}k"


def plot_losses(steps: list[int], series: dict[str, list[float]]) -> np.ndarray:
    """An RGB image of each series (name -> values at `steps`) against step."""
    img = np.full((H, W, 3), 255, dtype=np.uint8)
    x_lo, x_hi = min(steps, default=0), max(max(steps, default=1), 1)
    values = [v for vs in series.values() for v in vs]
    y_lo, y_hi = (min(values), max(values)) if values else (0.0, 1.0)
    if y_hi - y_lo < 1e-9:
        y_lo, y_hi = y_lo - 0.5, y_hi + 0.5
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM

    def px(step, v):
        return LEFT + (step - x_lo) / max(x_hi - x_lo, 1) * pw, TOP + (y_hi - v) / (y_hi - y_lo) * ph

    for i in range(5):  # ticks and grid lines
        v = y_lo + (y_hi - y_lo) * i / 4
        _, y = px(x_lo, v)
        _line(img, LEFT, y, W - RIGHT, y, (225, 225, 225), 1)
        _text(img, 6, int(y) - 5, _fmt_loss(v))
        s = round(x_lo + (x_hi - x_lo) * i / 4)
        x, _ = px(s, y_lo)
        label = _fmt_step(s)
        _text(img, min(int(x) - 4 * len(label), W - 8 * len(label) - 2), H - BOTTOM + 8, label)
    _line(img, LEFT, TOP, LEFT, H - BOTTOM, (0, 0, 0))
    _line(img, LEFT, H - BOTTOM, W - RIGHT, H - BOTTOM, (0, 0, 0))
    _text(img, W // 2 - 16, H - 22, "step")
    for k, (name, vs) in enumerate(series.items()):
        color = COLORS.get(name, (44, 160, 44))
        pts = [px(s, v) for s, v in zip(steps, vs)]
        for (xa, ya), (xb, yb) in zip(pts, pts[1:]):
            _line(img, xa, ya, xb, yb, color)
        _line(img, W - 150, TOP + 14 + 16 * k, W - 130, TOP + 14 + 16 * k, color)
        _text(img, W - 124, TOP + 9 + 16 * k, name.replace("_", " "))
    return img


def plot_metrics(metrics: str | os.PathLike, out: str | os.PathLike) -> None:
    """metrics.jsonl (records with step, train_loss, val_loss) -> a PNG at `out`, written atomically."""
    records = [json.loads(line) for line in Path(metrics).read_text(encoding="utf-8").splitlines() if line.strip()]
    steps = [r["step"] for r in records]
    series = {k: [r[k] for r in records] for k in ("train_loss", "val_loss")}
    atomic_write_bytes(out, png_bytes(plot_losses(steps, series)))
