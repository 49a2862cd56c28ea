"""The page's photo view, bulk actions on faces, "not a face", undo and "same person?", driven
through a real browser (the fixtures of tests/test_web.py) and checked in the library afterwards."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.conftest import invoke, offline_settings
from tests.test_same_person import opened, split_library
from tests.test_web import Server, browser, call, click, library, persons_json, server

__all__ = ["browser", "library", "server"]  # fixtures, taken by name
pytestmark = pytest.mark.servers  # `facepic serve` on the embedded database


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


def test_the_labels_on_a_group_photo_never_touch(server: Server, browser: Any) -> None:
    faces = [f for p in _persons(server) for f in call(f"{server.url}/api/persons/{p['id']}")[1]["faces"]]
    group = next(f["image_id"] for f in faces if f["photo"] == "couple.jpg")
    for width in (1280, 375):  # at a phone's width the labels are drawn larger
        browser.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": width < 500},
        )
        browser.get(f"{server.url}/photos/{group}")
        labels = browser.execute_script(
            "return [...document.querySelectorAll('svg.boxes.whole text')].map(t => {"
            " const r = t.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; })"
        )
        assert len(labels) == 2
        svg = browser.execute_script(
            "const r = document.querySelector('svg.boxes.whole').getBoundingClientRect();"
            " return [r.left, r.top, r.right, r.bottom];"
        )
        for n, (left, top, right, bottom) in enumerate(labels):
            assert svg[0] <= left and right <= svg[2] and svg[1] <= top and bottom <= svg[3]
            for other in labels[n + 1 :]:
                apart = right < other[0] or other[2] < left or bottom < other[1] or other[3] < top
                assert apart, (labels, width)


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


def _face_ids(driver: Any) -> list[str]:
    return [e.get_attribute("data-face") for e in driver.find_elements("css selector", "li.card[data-face]")]


def _pick(driver: Any, face_id: str, shift: bool = False) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    box = driver.find_element("css selector", f"li[data-face='{face_id}'] input.pick")
    if shift:
        ActionChains(driver).key_down(Keys.SHIFT).click(box).key_up(Keys.SHIFT).perform()
    else:
        box.click()


def test_many_faces_are_moved_rejected_made_a_person_and_called_not_a_face_at_once(
    server: Server, browser: Any, library: dict[str, str]
) -> None:
    persons = _persons(server)
    total = sum(p["face_count"] for p in persons)
    a, b = [p for p in persons if p["face_count"] >= 3][:2]
    driver = browser

    # Shift-click ticks a range; the three move to `b` in one go.
    driver.get(f"{server.url}/persons/{a['id']}")
    first, second, third = _face_ids(driver)[:3]
    _pick(driver, first)
    _pick(driver, third, shift=True)
    assert [p.is_selected() for p in driver.find_elements("css selector", "input.pick")][:4] == [True] * 3 + [False]
    assert driver.find_element("css selector", "#bulk .chosen").text == "3 chosen"
    driver.find_element("css selector", "#bulk input[name=person]").send_keys(b["id"])
    click(driver, "#bulk button[value=move]")
    moved = {first, second, third}
    in_b = {f["face_id"]: f["image_id"] for f in call(f"{server.url}/api/persons/{b['id']}")[1]["faces"]}
    assert moved <= set(in_b)
    images = {in_b[f] for f in moved}
    assert call(f"{server.url}/api/persons/{a['id']}")[1]["face_count"] == a["face_count"] - 3

    # Not `b`: the three wait among the unassigned.
    driver.get(f"{server.url}/persons/{b['id']}")
    for face in moved:
        _pick(driver, face)
    click(driver, "#bulk button[value=reject]")
    assert not moved & set(_face_ids(driver))
    driver.get(server.url + "/unassigned")
    assert moved <= set(_face_ids(driver))

    # One new person of the three.
    for face in moved:
        _pick(driver, face)
    click(driver, "#bulk button[value=new]")
    assert set(_face_ids(driver)) == moved
    new = driver.current_url.rsplit("/", 1)[1]

    # Not a face: every face on the page, gone from everywhere.
    driver.find_element("css selector", "[data-select-all]").click()
    assert driver.find_element("css selector", "#bulk .chosen").text == "3 chosen"
    click(driver, "#bulk button[value=ignore]")
    assert not _face_ids(driver)
    driver.get(server.url + "/unassigned")
    assert not moved & set(_face_ids(driver))
    for image in images:
        assert not moved & {f["face_id"] for f in call(f"{server.url}/api/photos/{image}")[1]["faces"]}
    status, unassigned = call(server.url + "/api/unassigned")
    assert not moved & {f["face_id"] for g in unassigned["groups"] for f in g["faces"]}

    # The API: many faces at once, at most 1,000.
    assert call(server.url + "/api/faces/ignore", {"faces": []})[0] == 400
    assert call(server.url + "/api/faces/move", {"faces": [f"x{i}" for i in range(1001)], "person": b["id"]})[0] == 400
    status, done = call(server.url + "/api/faces/move", {"faces": [first], "person": b["id"]})
    assert status == 200 and done["person_id"] == b["id"]
    assert call(server.url + "/api/faces/ignore", {"faces": [first]})[0] == 200
    server.stop()

    # The library afterwards: counts without the ignored faces, recluster leaves them out.
    assert invoke(library, "recluster").exit_code == 0
    after = persons_json(library)
    assert sum(p["face_count"] for p in after) == total - 3
    assert not moved & {f["face_id"] for p in after for f in p["faces"]}
    assert next(p for p in after if p["id"] == new)["face_count"] == 0
    result = invoke(library, "check")
    assert result.output.strip() == "the library is consistent", result.output


def _state(env: dict[str, str]) -> dict[str, Any]:
    """The library as the user sees it: each person's name, hidden flag and faces."""
    return {
        p["id"]: (p["name"], p["hidden"], p["face_count"], sorted(f["face_id"] for f in p["faces"]))
        for p in persons_json(env)
    }


def test_undo_puts_back_a_merge_a_not_a_face_and_a_name(server: Server, browser: Any, library: dict[str, str]) -> None:
    persons = _persons(server)
    first, second = persons[0]["id"], persons[1]["id"]
    driver = browser
    driver.get(f"{server.url}/persons/{first}")
    field = driver.find_element("css selector", "form[action$='/name'] input[name=name]")
    field.clear()
    field.send_keys("Ada")
    click(driver, "form[action$='/name'] button")
    named = {p["id"]: p for p in _persons(server)}
    face = call(f"{server.url}/api/persons/{second}")[1]["faces"][0]["face_id"]

    # Not a face, then undo: the face is back in its person.
    assert call(server.url + "/api/faces/ignore", {"faces": [face]})[0] == 200
    assert call(f"{server.url}/api/persons/{second}")[1]["face_count"] == named[second]["face_count"] - 1
    status, done = call(server.url + "/api/undo", {})
    assert status == 200 and done["undone"] == "ignore"
    assert face in {f["face_id"] for f in call(f"{server.url}/api/persons/{second}")[1]["faces"]}

    # Merge `second` into `first` on the page, then Undo on the page.
    server.stop()
    before = _state(library)
    again = Server(library)
    try:
        driver.get(f"{again.url}/persons/{second}")
        driver.find_element("css selector", "input[name=into]").send_keys(first)
        click(driver, "form[action$='/merge'] button")
        assert driver.current_url.endswith(f"/persons/{first}")
        assert second not in {p["id"] for p in _persons(again)}
        click(driver, "form.undo button")
        assert "undone: the merge" in driver.find_element("css selector", ".flash").text
    finally:
        again.stop()
    assert _state(library) == before
    result = invoke(library, "check")
    assert result.output.strip() == "the library is consistent", result.output

    # The CLI undoes the one before: the name.
    result = invoke(library, "undo")
    assert result.exit_code == 0 and result.output.startswith("undid the name of "), result.output
    assert _state(library)[first][0] == ""
    result = invoke(library, "undo")
    assert result.exit_code == 1 and "nothing to undo" in result.output, result.output
    assert invoke(library, "check").output.strip() == "the library is consistent"


@pytest.fixture(scope="module")
def split_built(tmp_path_factory: pytest.TempPathFactory, model_root: Path) -> tuple[dict[str, str], Path]:
    """A library of two identities' photos, each photo a person of its own (a split library):
    every two persons of one identity are a "same person?" pair."""
    base = tmp_path_factory.mktemp("web-split")
    env = offline_settings(base / "data", model_root)
    split_library(env, base / "drive")
    return env, base / "data"


@pytest.fixture
def split(split_built: tuple[dict[str, str], Path], tmp_path: Path) -> Iterator[tuple[Server, dict[str, str]]]:
    env, data = split_built
    shutil.copytree(data, tmp_path / "data", ignore=shutil.ignore_patterns(".facepic.lock"))
    env = {**env, "FACEPIC_DATA_DIR": str(tmp_path / "data")}
    started = Server(env)
    yield started, env
    started.stop()


def test_same_person_pairs_are_answered_yes_and_no_on_the_page(
    split: tuple[Server, dict[str, str]], browser: Any
) -> None:
    server, env = split
    driver = browser
    identity = {
        p["id"]: call(f"{server.url}/api/persons/{p['id']}")[1]["faces"][0]["photo"].split("-")[0]
        for p in _persons(server)
    }
    status, listed = call(server.url + "/api/same")
    assert status == 200 and listed["total"] == 6
    assert all(identity[p["a"]["id"]] == identity[p["b"]["id"]] for p in listed["pairs"])

    # From the people page to the pairs, each shown side by side with its cover and count.
    driver.get(server.url + "/")
    link = driver.find_element("css selector", "a.same-link")
    assert link.text == "Same person? 6"
    link.click()
    shown = driver.find_elements("css selector", "li.pair")
    assert [p.get_attribute("data-pair") for p in shown] == [f"{p['a']['id']} {p['b']['id']}" for p in listed["pairs"]]
    first = shown[0]
    assert [s.text.splitlines()[:2] for s in first.find_elements("css selector", ".side")] == [
        ["Unnamed", "1 face"]
    ] * 2
    assert len(first.find_elements("css selector", "img[src*='/img/cover/']")) == 2

    # Yes: one person (the one with the smaller id keeps, both having one face).
    yes = next(p for p in listed["pairs"] if identity[p["a"]["id"]] == "jessica_alba")
    gone, kept = yes["a"]["id"], yes["b"]["id"]
    click(driver, f"li.pair[data-pair='{gone} {kept}'] button[value=yes]")
    assert "one person now" in driver.find_element("css selector", ".flash").text
    assert driver.current_url == server.url + "/same"
    persons = {p["id"]: p for p in _persons(server)}
    assert gone not in persons and persons[kept]["face_count"] == 2

    # No: kept apart, and not asked again.
    no = next(p for p in listed["pairs"] if identity[p["a"]["id"]] == "tom_hanks")
    a, b = no["a"]["id"], no["b"]["id"]
    click(driver, f"li.pair[data-pair='{a} {b}'] button[value=no]")
    assert "kept apart" in driver.find_element("css selector", ".flash").text
    pairs = {(p["a"]["id"], p["b"]["id"]) for p in call(server.url + "/api/same")[1]["pairs"]}
    assert (a, b) not in pairs and (b, a) not in pairs
    assert f"{a} {b}" not in [p.get_attribute("data-pair") for p in driver.find_elements("css selector", "li.pair")]

    # An unnamed person's page links to its own pairs.
    driver.get(f"{server.url}/persons/{a}")
    link = driver.find_element("css selector", "a.same-link")
    mine = [p for p in call(f"{server.url}/api/same?person={a}")[1]["pairs"] if a in (p["a"]["id"], p["b"]["id"])]
    assert link.text == f"Same person? {len(mine)}" and mine
    link.click()
    assert len(driver.find_elements("css selector", "li.pair")) == len(mine)

    # The API answers as the page does, and refuses an answer it cannot read.
    assert call(server.url + "/api/same", {"persons": [a, b]})[0] == 400  # yes or no: never a default
    assert call(server.url + "/api/same", {"persons": [a], "same": False})[0] == 400
    assert call(server.url + "/api/same", {"persons": [a, "nobody"], "same": False})[0] == 400
    status, done = call(server.url + "/api/same", {"persons": [a, a], "same": False})
    assert status == 400 and "one person" in done["error"]
    server.stop()

    # The library afterwards: merged; the two faces reject each other, through recluster too.
    with opened(env) as ctx:
        faces = {f["person_id"]: f for f in ctx.library.faces.find({"person_id": {"$in": [a, b]}}, {"embedding": 0})}
    assert faces[a]["rejected"] == faces[a]["not_same"] == [b] and faces[b]["rejected"] == [a]
    assert invoke(env, "recluster").exit_code == 0
    after = persons_json(env)
    holding = {p["id"]: {f["photo"].split("-")[0] for f in p["faces"]} for p in after if p["faces"]}
    # Jessica Alba is one person, the merged one; Tom Hanks two, the two answered apart in each.
    assert [p for p, who in holding.items() if "jessica_alba" in who] == [kept]
    tom = [p for p in after if any(f["photo"].startswith("tom_hanks") for f in p["faces"])]
    assert len(tom) == 2
    assert all(len({f["face_id"] for f in p["faces"]} & {faces[a]["_id"], faces[b]["_id"]}) == 1 for p in tom)
    assert invoke(env, "check").output.strip() == "the library is consistent"
