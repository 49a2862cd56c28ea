"""Screenshots of `facepic serve`'s pages for the README: people, a person, a photo, the
unassigned faces. Needs Debian's chromium and chromium-driver, and a running `facepic serve`.

    python scripts/web_screenshots.py http://127.0.0.1:8000 docs/
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.browser import chromium


def save_small(png: bytes, out: Path) -> None:
    """A palette PNG: a tenth of the size, and the README stays light."""
    Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=192, method=Image.Quantize.MEDIANCUT).save(
        out, optimize=True
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    base = args.url.rstrip("/")
    persons = json.load(urllib.request.urlopen(f"{base}/api/persons"))["persons"]
    person = persons[0]["id"]
    faces = json.load(urllib.request.urlopen(f"{base}/api/persons/{person}"))["faces"]
    # A photo with the most faces on the first page of the biggest persons.
    best = None
    for p in persons[:10]:
        for f in json.load(urllib.request.urlopen(f"{base}/api/persons/{p['id']}"))["faces"][:10]:
            photo = json.load(urllib.request.urlopen(f"{base}/api/photos/{f['image_id']}"))
            if best is None or len(photo["faces"]) > len(best["faces"]):
                best = photo
    photo_id = best["id"] if best else faces[0]["image_id"]
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        driver = chromium(Path(profile))
        try:
            for name, path in (
                ("people", "/"),
                ("person", f"/persons/{person}"),
                ("photo", f"/photos/{photo_id}"),
                ("unassigned", "/unassigned"),
            ):
                driver.get(base + path)
                # Load every image now (lazy ones too) and wait for them, so no tile is blank.
                driver.execute_script("document.querySelectorAll('img').forEach(i => i.loading = 'eager')")
                for _ in range(50):
                    if driver.execute_script("return [...document.images].every(i => i.complete)"):
                        break
                    time.sleep(0.1)
                save_small(driver.get_screenshot_as_png(), args.out / f"web-{name}.png")
                print(args.out / f"web-{name}.png")
        finally:
            driver.quit()


if __name__ == "__main__":
    main()
