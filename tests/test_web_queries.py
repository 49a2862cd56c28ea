"""The page's queries (``Library.web_*``) give the known answer on a small library, on the
embedded database of `facepic run` and on the MongoDB wire server the tests start."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from facepic.db import Library
from facepic.embedded import embedded_database
from facepic.web.roster import Roster
from tests.conftest import settings_of

# Every query runs on a database server: the embedded one or the wire server.
pytestmark = pytest.mark.servers

A, B, C, D = "pa00000000000000", "pb00000000000000", "pc00000000000000", "pd00000000000000"


def taken(year: int) -> datetime:
    return datetime(year, 6, 1, tzinfo=UTC)


# image id -> (taken in, the persons of its faces, None for a face of nobody)
IMAGES = {
    "i1": (2020, [A, B]),
    "i2": (2021, [A]),
    "i3": (2022, [B, C]),
    "i4": (2019, [C, A, B]),
    "i5": (2018, [None, D]),
    "i6": (2017, [A, A]),
}


def fill(lib: Library) -> None:
    lib.persons.insert_many(
        [
            {"_id": A, "name": "ann", "face_count": 5, "best_face_id": "i1-f0", "updated_at": "2024-01-02"},
            {"_id": B, "name": "Bob", "face_count": 3, "hidden": True, "updated_at": "2024-01-04"},
            {"_id": C, "name": "Annette", "face_count": 2, "updated_at": "2024-01-03"},
            {"_id": D, "name": "", "face_count": 1, "updated_at": "2024-01-01"},
        ]
    )
    faces, images = [], []
    for image_id, (year, people) in IMAGES.items():
        mine = [
            {"_id": f"{image_id}-f{n}", "image_id": image_id, "person_id": p, "box": [0, 0, 1, 1], "embedding": [0.1]}
            for n, p in enumerate(people)
        ]
        faces += mine
        images.append(
            {
                "_id": image_id,
                "path": f"{image_id}.jpg",
                "taken_at": taken(year),
                "faces": [{"face_id": f["_id"], "person_id": f["person_id"]} for f in mine],
            }
        )
    faces.append({"_id": "i9-f0", "image_id": "i5", "person_id": None, "candidates": [A, C]})
    lib.faces.insert_many(faces)
    lib.images.insert_many(images)


@pytest.fixture(scope="module")
def embedded_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The embedded database of `facepic run`, started once for this file's tests."""
    data = tmp_path_factory.mktemp("queries") / "data"
    env = {
        "FACEPIC_DATA_DIR": str(data),
        "FACEPIC_MONGODB_URI": "",
        "FACEPIC_MODEL_ROOT": "/x",
        "FACEPIC_DB_LINGER": "0",
    }
    with embedded_database(settings_of(env)) as settings:
        yield settings.mongodb_uri


@pytest.fixture(params=["embedded", "wire server"])
def lib(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Library]:
    """A library of its own (a database of its own, on a server shared with the other tests)."""
    uri = request.getfixturevalue("embedded_uri" if request.param == "embedded" else "mongo_server")
    library = Library(uri, f"facepic_queries_{id(tmp_path)}")
    fill(library)
    yield library
    library.client.drop_database(library.db.name)
    library.client.close()


def ids(docs: list[dict]) -> list[str]:
    return [d["_id"] for d in docs]


def test_the_page_queries_give_the_known_answer(lib: Library) -> None:
    docs, total = Roster(lib).page(False, 0, 10)
    assert (ids(docs), total) == ([A, C, D], 3)
    docs, total = Roster(lib).page(True, 1, 2)
    assert (ids(docs), total) == ([B, C], 4)
    assert lib.web_person(B)["name"] == "Bob" and lib.web_person("pnobody000000000") is None
    assert sorted(lib.web_persons_by_id([C, A, "", "pnobody000000000"])) == [A, C]
    assert ids(Roster(lib).find(" ann ", 10)) == [A, C]
    assert ids(Roster(lib).find("pb0", 10)) == [B]
    assert ids(Roster(lib).find("a.*", 10)) == []  # text, not a pattern
    assert sorted(ids(lib.web_face_photos(A))) == ["i1-f0", "i2-f0", "i4-f1", "i6-f0", "i6-f1"]
    assert lib.web_photo_dates(["i2", "i0"])["i2"]["path"] == "i2.jpg"
    docs = lib.web_faces(["i6-f1", "i2-f0", "i0-f0"])
    assert ids(docs) == ["i6-f1", "i2-f0"] and all("embedding" not in d for d in docs)
    docs, total = lib.web_unassigned(0, 10)
    assert (ids(docs), total) == (["i9-f0", "i5-f0"], 2)
    assert sorted(lib.web_images(["i2", "i1", "i0"])) == ["i1", "i2"]


def test_the_people_page_sorts_and_filters_by_name(lib: Library) -> None:
    def page(*args: object) -> tuple[list[str], int]:
        docs, total = Roster(lib).page(*args)  # type: ignore[arg-type]
        return ids(docs), total

    assert page(True, 0, 10, "name") == ([A, C, B, D], 4)  # ignoring case; the unnamed last
    assert page(True, 1, 2, "name") == ([C, B], 4)
    assert page(True, 0, 10, "recent") == ([B, C, A, D], 4)
    assert page(False, 0, 10, "faces", "ANN") == ([A, C], 2)
    assert page(True, 0, 10, "name", "o") == ([B], 1)
    assert page(True, 0, 10, "faces", "a.*") == ([], 0)  # text, not a pattern


@pytest.mark.parametrize(
    "wanted, expected",
    [
        ([A], ["i2", "i1", "i4", "i6"]),
        ([D], ["i5"]),
        ([A, B], ["i1", "i4"]),
        ([B, A, B], ["i1", "i4"]),
        ([B, C], ["i3", "i4"]),
        ([A, B, C], ["i4"]),
        ([A, D], []),
        ([A, "pnobody000000000"], []),
    ],
)
def test_photos_with_every_one_of_several_persons(lib: Library, wanted: list[str], expected: list[str]) -> None:
    docs, total = lib.web_photos_with(wanted, 0, 10)
    assert (ids(docs), total) == (expected, len(expected))
    if len(expected) > 1:
        docs, total = lib.web_photos_with(wanted, 1, 1)
        assert (ids(docs), total) == (expected[1:2], len(expected))


def test_the_people_page_follows_every_change_to_persons(lib: Library) -> None:
    roster = Roster(lib)
    assert roster.page(True, 0, 10)[1] == 4
    lib.set_person_fields(D, {"name": "Zed", "face_count": 9})
    lib.set_persons_fields([B], {"hidden": False})
    lib.delete_person(C)
    lib.write_persons({"pe00000000000000": ({"face_count": 4, "name": "eve"}, {"hidden": False})}, [])
    docs, total = roster.page(False, 0, 10)
    assert (ids(docs), total) == ([D, A, "pe00000000000000", B], 4)
    assert [d["name"] for d in roster.page(True, 0, 10, "name")[0]] == ["ann", "Bob", "eve", "Zed"]
    assert roster.named(" ZED ") == [D] and ids(roster.find("ev", 10)) == ["pe00000000000000"]
    # More changes than the library lists: every person is read again.
    for n in range(60):
        lib.set_person_fields(A, {"face_count": n})
    assert ids(roster.page(True, 0, 1)[0]) == [A]


@pytest.mark.parametrize(
    "wanted, since, until, folder, expected",
    [
        ([A], "2019-01-01", "2020-12-31", None, ["i1", "i4"]),
        ([A], "2020-06-01", None, None, ["i2", "i1"]),
        ([A], None, "2019-06-01", None, ["i4", "i6"]),
        ([A, B], "2020-01-01", "2020-12-31", None, ["i1"]),
        ([A], None, None, "trip", ["i2", "i6"]),
        ([A], None, None, "trip/", ["i2", "i6"]),
        ([A], "2018-01-01", None, "trip", ["i2"]),
        ([A], None, None, "tri", []),
    ],
)
def test_photos_by_date_range_and_folder(
    lib: Library, wanted: list[str], since: str | None, until: str | None, folder: str | None, expected: list[str]
) -> None:
    for image_id in ("i2", "i6"):
        lib.set_image_fields(image_id, {"path": f"trip/{image_id}.jpg"})
    docs, total = lib.web_photos_with(wanted, 0, 10, since, until, folder)
    assert (ids(docs), total) == (expected, len(expected))
