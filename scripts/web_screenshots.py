"""Screenshots of `facepic serve`'s pages for the README: people, a person, a photo, the
unassigned faces, a search, "same person?", each at desktop width (web-NAME.png) and phone width, 375 px
(web-NAME-phone.png). Needs Debian's chromium and chromium-driver, and a running `facepic serve`;
--only NAME shoots that page alone (a library with "same person?" pairs, say).

    python scripts/web_screenshots.py http://127.0.0.1:8000 docs/
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.browser import chromium

WIDTHS = (("", 1280, 900), ("-phone", 375, 812))  # file suffix, window width and height
PAGES = ("people", "person", "photo", "unassigned", "search", "same")


def save_small(png: bytes, out: Path) -> None:
    """A palette PNG: a tenth of the size, and the README stays light."""
    Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=192, method=Image.Quantize.MEDIANCUT).save(
        out, optimize=True
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("out", type=Path)
    parser.add_argument("--only", action="append", choices=PAGES, help="Only this page (may be repeated).")
    args = parser.parse_args()
    base = args.url.rstrip("/")
    persons = json.load(urllib.request.urlopen(f"{base}/api/persons"))["persons"]
    person = persons[0]["id"]
    faces = json.load(urllib.request.urlopen(f"{base}/api/persons/{person}"))["faces"]
    # A photo with the most faces among the first faces of the first persons.
    best = None
    for p in persons[:40]:
        for f in json.load(urllib.request.urlopen(f"{base}/api/persons/{p['id']}"))["faces"][:20]:
            photo = json.load(urllib.request.urlopen(f"{base}/api/photos/{f['image_id']}"))
            if best is None or len(photo["faces"]) > len(best["faces"]):
                best = photo
    photo_id = best["id"] if best else faces[0]["image_id"]
    # The search: the persons of that photo, all of them.
    together = [f["person"]["id"] for f in (best or {}).get("faces", []) if f.get("person")][:2] or [person]
    search = "/search?" + urllib.parse.urlencode([("person", p) for p in together])
    args.out.mkdir(parents=True, exist_ok=True)
    paths = {
        "people": "/",
        "person": f"/persons/{person}",
        "photo": f"/photos/{photo_id}",
        "unassigned": "/unassigned",
        "search": search,
        "same": "/same",
    }
    pages = [(name, paths[name]) for name in PAGES if not args.only or name in args.only]
    for suffix, width, height in WIDTHS:
        shoot(base, args.out, suffix, width, height, pages)


def shoot(base: str, out: Path, suffix: str, width: int, height: int, pages: list[tuple[str, str]]) -> None:
    with tempfile.TemporaryDirectory() as profile:
        driver = chromium(Path(profile), width, height)
        # Headless Chromium keeps a window 500 px wide at least: a phone's width is emulated.
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 500},
        )
        try:
            for name, path in pages:
                driver.get(base + path)
                # Load every image now (lazy ones too) and wait for them, so no tile is blank.
                driver.execute_script("document.querySelectorAll('img').forEach(i => i.loading = 'eager')")
                for _ in range(50):
                    if driver.execute_script("return [...document.images].every(i => i.complete)"):
                        break
                    time.sleep(0.1)
                save_small(driver.get_screenshot_as_png(), out / f"web-{name}{suffix}.png")
                print(out / f"web-{name}{suffix}.png")
        finally:
            driver.quit()


if __name__ == "__main__":
    main()
