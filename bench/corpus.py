"""A corpus of camera-sized photos built from ../shared/photos, for benchmarks.

Each photo is 4032x3024, JPEG quality 90, with several faces: a 2x2 grid of labelled photos,
upscaled, with mild sensor-like noise so that it compresses (and decodes) like a real camera
JPEG of 3-5 MB rather than a smooth upscaled image. Built once and cached under bench/corpus/.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).parent
SHARED = HERE.parent.parent / "shared" / "photos"
SIZE = (4032, 3024)


def sources(shared: Path = SHARED) -> list[Path]:
    found = sorted(shared.glob("*/*.jpg"))
    if not found:
        raise SystemExit(f"no photos under {shared}: the benchmarks need ../shared/photos")
    return found


def build(count: int, out: Path | None = None, seed: int = 7, faces_per_photo: int = 4) -> Path:
    """``count`` camera-sized photos in ``out`` (default bench/corpus/camera-<count>)."""
    out = out or HERE / "corpus" / f"camera-{count}"
    if out.is_dir() and len(list(out.glob("*.jpg"))) == count:
        return out
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    noise_rng = np.random.default_rng(seed)
    pool = sources()
    cols = 2
    rows = (faces_per_photo + cols - 1) // cols
    cell = (SIZE[0] // cols, SIZE[1] // rows)
    for i in range(count):
        canvas = Image.new("RGB", SIZE)
        for k, src in enumerate(rng.sample(pool, faces_per_photo)):
            with Image.open(src) as im:
                tile = im.convert("RGB")
                tile.thumbnail(cell, Image.Resampling.BICUBIC)
                if tile.size[0] < cell[0] // 2:
                    scale = min(cell[0] / tile.size[0], cell[1] / tile.size[1])
                    tile = tile.resize((int(tile.size[0] * scale), int(tile.size[1] * scale)), Image.Resampling.BICUBIC)
            x = (k % cols) * cell[0] + (cell[0] - tile.size[0]) // 2
            y = (k // cols) * cell[1] + (cell[1] - tile.size[1]) // 2
            canvas.paste(tile, (x, y))
        arr = np.asarray(canvas, dtype=np.int16)
        arr = arr + noise_rng.normal(0, 4, size=arr.shape).astype(np.int16)
        Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(out / f"IMG_{i:04d}.jpg", "JPEG", quality=90)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--photos", type=int, default=40)
    args = parser.parse_args()
    folder = build(args.photos)
    sizes = [p.stat().st_size for p in folder.glob("*.jpg")]
    print(f"{folder}: {len(sizes)} photos, {sum(sizes) / len(sizes) / 1e6:.1f} MB each on average")
