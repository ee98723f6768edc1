"""loss.png: a valid PNG of the right size, with the series drawn in their colours."""

import json
import struct
import zlib

import numpy as np

from gptkit.training.plot import COLORS, H, W, _fmt_step, plot_losses, plot_metrics, png_bytes


def _decode_png(data: bytes) -> np.ndarray:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, size = 8, b"", None
    while pos < len(data):
        (n,), kind = struct.unpack(">I", data[pos : pos + 4]), data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + n]
        assert struct.unpack(">I", data[pos + 8 + n : pos + 12 + n])[0] == zlib.crc32(kind + body)
        if kind == b"IHDR":
            size = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    w, h = size
    raw = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(h, 1 + 3 * w)
    assert (raw[:, 0] == 0).all()  # filter type 0 on every row
    return raw[:, 1:].reshape(h, w, 3)


def test_png_round_trip():
    img = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    assert np.array_equal(_decode_png(png_bytes(img)), img)


def test_step_labels():
    assert [_fmt_step(s) for s in (0, 750, 1075, 2000, 43000)] == ["0", "750", "1.1k", "2k", "43k"]


def test_plot_metrics(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    rows = [{"step": s, "train_loss": 4.0 / (1 + s / 100), "val_loss": 4.2 / (1 + s / 100)} for s in range(0, 1001, 100)]
    metrics.write_text("".join(json.dumps(r) + "\n" for r in rows))
    plot_metrics(metrics, tmp_path / "loss.png")
    img = _decode_png((tmp_path / "loss.png").read_bytes())
    assert img.shape == (H, W, 3)
    for name, color in COLORS.items():
        assert (img == color).all(axis=-1).sum() > 200, name


def test_single_point_and_flat_series():
    img = plot_losses([0], {"train_loss": [2.0], "val_loss": [2.0]})
    assert img.shape == (H, W, 3)
