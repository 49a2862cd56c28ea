"""The page's photo view, bulk actions on faces, "not a face" and undo, driven through a real
browser (the fixtures of tests/test_web.py) and checked in the library afterwards."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from PIL import Image

from tests.conftest import invoke
from tests.test_web import Server, browser, built, call, click, library, server  # noqa: F401 - fixtures

__all__ = ["browser", "built", "library", "server"]


def _persons(server: Server) -> list[dict[str, Any]]:
    return call(server.url + "/api/persons")[1]["persons"]


def test_the_photo_view_shows_the_whole_photo_with_named_boxes_and_walks_a_person(
    server: Server, browser: Any, library: dict[str, str]
) -> None:
    data = Path(library["FACEPIC_DATA_DIR"])
    person = next(p for p in _persons(server) if p["face_count"] >= 3)
    assert call(f"{server.url}/api/persons/{person['id']}/name", {"name": "Walker"})[0] == 200
    faces = call(f"{server.url}/api/persons/{person['id']}")[1]["faces"]
    photos = list(dict.fromkeys(f["image_id"] for f in faces))

    browser.get(f"{server.url}/persons/{person['id']}")
    browser.find_element("css selector", "li.card[data-face] a").click()
    assert browser.current_url.endswith(f"/photos/{photos[0]}?person={person['id']}")
    svg = browser.find_element("css selector", "svg.boxes.whole")
    photo = call(f"{server.url}/api/photos/{photos[0]}")[1]
    assert len(svg.find_elements("css selector", "rect")) == len(photo["faces"])
    assert "Walker" in [t.text for t in svg.find_elements("css selector", "text")]
    loaded = browser.execute_script(
        "const i = new Image(); i.src = arguments[0]; await i.decode(); return [i.naturalWidth, i.naturalHeight];",
        svg.find_element("css selector", "image").get_attribute("href"),
    )
    # The rendition is the whole photo upright, its longest side at most 1600, kept on disk.
    rendition = data / "thumbnails" / f"display_{photos[0]}.jpg"
    with Image.open(rendition) as im:
        assert list(im.size) == loaded and max(im.size) <= 1600
        assert abs(im.width / im.height - photo["width"] / photo["height"]) < 0.01

    # Next and previous, within the person, in the order of its page.
    for expected in photos[1:]:
        browser.find_element("css selector", "a[rel=next]").click()
        assert browser.current_url.endswith(f"/photos/{expected}?person={person['id']}")
    assert not browser.find_elements("css selector", "a[rel=next]")
    browser.find_element("css selector", "a[rel=prev]").click()
    assert browser.current_url.endswith(f"/photos/{photos[-2]}?person={person['id']}")

    # Renditions are the library's files: check names them, cleanup removes them.
    server.stop()
    result = invoke(library, "check")
    assert result.exit_code == 0 and result.output.strip() == "the library is consistent", result.output
    assert invoke(library, "cleanup", "--yes").exit_code == 0
    assert not rendition.exists()


def test_the_photo_view_falls_back_to_the_thumbnail_when_the_original_is_away(
    server: Server, browser: Any, library: dict[str, str], tmp_path: Path
) -> None:
    face = next(f for p in _persons(server) for f in call(f"{server.url}/api/persons/{p['id']}")[1]["faces"])
    photo = call(f"{server.url}/api/photos/{face['image_id']}")[1]
    path = Path(photo["root"]) / photo["path"]
    aside = tmp_path / "aside.jpg"
    shutil.move(path, aside)
    try:
        browser.get(f"{server.url}/photos/{photo['id']}")
        assert not browser.find_elements("css selector", "svg.boxes.whole")
        href = browser.find_element("css selector", "svg.boxes image").get_attribute("href")
        assert "/img/thumb/" in href
        status, _ = call(f"{server.url}/img/display/{photo['id']}.jpg")
        assert status == 200  # redirected to the thumbnail
    finally:
        shutil.move(aside, path)
    assert not (Path(library["FACEPIC_DATA_DIR"]) / "thumbnails" / f"display_{photo['id']}.jpg").exists()
