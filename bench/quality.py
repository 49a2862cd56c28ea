"""How well persons match identities: what `facepic run` leaves in the library, scored.

Every face of every photo goes through the index stage's decision (`facepic.matching.assign_photo`
with the quality gate, photo by photo in folder order) and then through the settling that `run`
does at its end (`facepic.settle`); the score counts the labelled face of each photo (identity =
folder name; the labelled face is the one nearest the photo's centre). Rows:

- ``naive``: the design's rule alone on the same faces (join the most similar known face above
  0.4, else found a person), the baseline;
- ``online``: the index stage alone (what the distributed deployment shows before it settles);
  a face left unassigned counts as a person of its own;
- ``run``: the index stage, then settling: what `facepic run` stores;
- ``run*``: ``run`` on the photos in shuffled orders (min..max F);
- ``queue*``: the distributed path in shuffled orders: the index stage, settling each time
  ``--batch`` photos have drained from the queue.

With ``--halves`` the identities are split in two fixed halves (by a hash of the name) and each
half is scored on its own, as if it were its own library: rules tuned on one half are checked on
the other. ``--trend 100,600`` scores random sets of that many identities.

    python bench/quality.py                   # ../shared/photos
    python bench/quality.py --photos ../shared/lfw-dev --cache /tmp/facepic-emb --halves
    python bench/quality.py --photos tests/photos
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))

from facepic import ids
from facepic.clustering import Faces
from facepic.matching import PersonIndex, Rules, assign_photo
from facepic.quality import FaceQuality, Limits, assess
from facepic.settings import Settings
from facepic.settle import Linkage, settle_batch, settle_faces

SHARED = HERE.parent.parent / "shared" / "photos"


# The product's defaults, from the one place that owns them.
_DEFAULTS = Settings.defaults()
RULES, LINKAGE, LIMITS = (
    Rules.from_settings(_DEFAULTS),
    Linkage.from_settings(_DEFAULTS),
    Limits.from_settings(_DEFAULTS),
)


@dataclass
class Photo:
    identity: str
    embeddings: np.ndarray  # every face of the photo, N x 512
    labelled: int  # index of the face nearest the centre
    quality: np.ndarray | None = None  # N x 4: size, sharpness, frontal, detector score
    path: str = ""  # relative to the folder

    def can_found(self, limits: Limits = LIMITS) -> list[bool]:
        """The index stage's quality gate for each face (all True without measurements)."""
        if self.quality is None:
            return [True] * len(self.embeddings)
        return [FaceQuality(*map(float, q)).can_found(limits) for q in self.quality]


def _detect(engine, settings, path: Path) -> tuple[np.ndarray, int, np.ndarray] | None:
    """What the detect stage keeps of one photo: embeddings, the labelled face, quality."""
    return found_faces(engine, settings, path)[1]


def labelled_face(boxes: np.ndarray, width: float, height: float) -> int:
    """Which of a photo's faces is its labelled one: the face whose box (x0, y0, x1, y1) has its
    centre nearest the photo's (the first on a tie)."""
    boxes = np.asarray(boxes, dtype=np.float64)
    centre = np.array([width / 2, height / 2])
    return int(np.argmin(np.linalg.norm((boxes[:, :2] + boxes[:, 2:]) / 2 - centre, axis=1)))


def found_faces(engine, settings, path: Path) -> tuple[list, tuple[np.ndarray, int, np.ndarray] | None]:
    """One photo's faces (``DetectedFace``) and what the cache keeps of them (None: no face)."""
    from facepic.decode import decode

    decoded = decode(path, settings.detect_size, settings.max_pixels)
    faces = engine.detect(decoded.rgb)
    if not faces:
        return [], None
    h, w = decoded.rgb.shape[:2]
    labelled = labelled_face(np.array([f.box for f in faces]), w, h)
    measured = []
    for f in faces:  # exactly as facepic.pipeline.detect assesses a face
        q = assess(decoded.rgb, f.box, decoded.to_full(f.box), decoded.to_full(f.landmarks), f.score)
        measured.append([q.size, q.sharpness, q.frontal, q.score])
    return faces, (np.array([f.embedding for f in faces], dtype=np.float32), labelled, np.array(measured))


def _cache_file(cache: Path, folder: Path, model: str) -> Path:
    return cache / f"{folder.resolve().name}-{model}.npz"


def _read_cache(path: Path) -> dict[str, tuple[np.ndarray, int, np.ndarray] | None]:
    if not path.exists():
        return {}
    with np.load(path, allow_pickle=False) as data:  # each data[key] reads the array again
        paths, counts, labelled = data["paths"].tolist(), data["counts"], data["labelled"]
        embeddings, quality = data["embeddings"], data["quality"]
    found: dict[str, tuple[np.ndarray, int, np.ndarray] | None] = {}
    ends = np.cumsum(counts)
    for rel, end, count, label in zip(paths, ends, counts, labelled):
        start = end - count
        found[rel] = (embeddings[start:end], int(label), quality[start:end]) if count else None
    return found


def _write_cache(path: Path, found: dict[str, tuple[np.ndarray, int, np.ndarray] | None]) -> None:
    rels = sorted(found)
    counts = np.array([len(found[r][0]) if found[r] else 0 for r in rels], dtype=np.int64)
    empty = np.zeros((0, 512), dtype=np.float32)
    embeddings = np.concatenate([found[r][0] if found[r] else empty for r in rels] or [empty])
    quality = np.concatenate([found[r][2] if found[r] else np.zeros((0, 4)) for r in rels] or [np.zeros((0, 4))])
    labelled = np.array([found[r][1] if found[r] else -1 for r in rels], dtype=np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, paths=np.array(rels), counts=counts, embeddings=embeddings, quality=quality, labelled=labelled)
    os.replace(tmp, path)


def cache_from_library(data_dir: Path, folder: Path, cache: Path, model: str = "buffalo_s") -> int:
    """Fill ``folder``'s cache file from a finished `facepic run` over it (its embedded library in
    ``data_dir``): the faces the detect stage stored, so a large folder is not detected twice.
    Returns the photos written."""
    from facepic.context import Context
    from facepic.documents import embeddings_from_bson
    from facepic.embedded import embedded_database

    settings = Settings.load(env={"FACEPIC_DATA_DIR": str(data_dir)}, env_file=None)
    found: dict[str, tuple[np.ndarray, int, np.ndarray] | None] = {}
    with embedded_database(settings) as live, Context(live) as ctx:
        lib = ctx.library
        photos = {d["_id"]: d for d in lib.images.find({}, {"path": 1, "width": 1, "height": 1})}
        by_photo: dict[str, list[dict]] = {}
        fields = {"image_id": 1, "index": 1, "embedding": 1, "box": 1, "score": 1, "quality": 1, "model": 1}
        for face in lib.faces.find({"model": model}, fields):
            by_photo.setdefault(face["image_id"], []).append(face)
    for image_id, doc in photos.items():
        faces = sorted(by_photo.get(image_id, []), key=lambda f: f["index"])
        if not faces:
            found[doc["path"]] = None
            continue
        labelled = labelled_face(np.array([f["box"] for f in faces]), doc["width"], doc["height"])
        quality = np.array(
            [[f["quality"]["size"], f["quality"]["sharpness"], f["quality"]["frontal"], f["score"]] for f in faces]
        )
        found[doc["path"]] = (embeddings_from_bson([f["embedding"] for f in faces]).copy(), labelled, quality)
    _write_cache(_cache_file(cache, folder, model), found)
    return len(found)


def embed(
    folder: Path, model: str = "buffalo_s", cache: Path | None = None, runtime: str = "auto"
) -> tuple[list[Photo], int]:
    """Faces of every labelled photo under ``folder``; also how many photos had none. With
    ``cache`` (a folder), what was found is kept in a file there and read back next time."""
    from facepic.detect import FaceEngine
    from facepic.models import resolve
    from facepic.runtime import Runtime

    paths = [p for p in sorted(folder.glob("*/*")) if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp")]
    cache_file = _cache_file(cache, folder, model) if cache else None
    found = _read_cache(cache_file) if cache_file else {}
    missing = [p for p in paths if str(p.relative_to(folder)) not in found]
    if missing:
        settings = Settings.load(env_file=None)
        engine = FaceEngine(resolve(model, settings.model_root), settings.detect_size, Runtime.resolve(runtime, 2))
        print(f"face model {model} on {engine.runtime.describe()}")
        for n, path in enumerate(missing, 1):
            found[str(path.relative_to(folder))] = _detect(engine, settings, path)
            if cache_file and (n % 500 == 0 or n == len(missing)):
                _write_cache(cache_file, found)
    photos, without = [], 0
    for path in paths:
        rel = str(path.relative_to(folder))
        hit = found[rel]
        if hit is None:
            without += 1
            continue
        photos.append(Photo(path.parent.name, hit[0], hit[1], hit[2], rel))
    return photos, without


def _nearest_before(photos: list[Photo]) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """For each face in order, the most similar face before it and that similarity (-1, -inf
    for the first), and the position of each photo's labelled face: what the plain rule
    decides by, whatever its threshold."""
    faces = np.concatenate([p.embeddings for p in photos]).astype(np.float32)
    nearest = np.full(len(faces), -1, dtype=np.int64)
    best = np.full(len(faces), -np.inf, dtype=np.float32)
    for start in range(1, len(faces), 1024):  # block by block: each face against those before it
        block = faces[start : start + 1024]
        sims = block @ faces[: start + len(block)].T
        sims[np.arange(len(block))[:, None] <= np.arange(start + len(block))[None, :] - start] = -np.inf
        nearest[start : start + len(block)] = sims.argmax(axis=1)
        best[start : start + len(block)] = sims.max(axis=1)
    labelled, at = [], 0
    for photo in photos:
        labelled.append(at + photo.labelled)
        at += len(photo.embeddings)
    return nearest, best, labelled


def naive(photos: list[Photo], threshold: float = 0.4, before: tuple | None = None) -> list[str]:
    """The design's rule, face by face, nothing else: a face joins the person of the most
    similar face before it where that is above ``threshold``, else founds one."""
    nearest, best, labelled = before or _nearest_before(photos)
    owner = np.arange(len(nearest))
    for i in range(len(nearest)):
        if best[i] > threshold:
            owner[i] = owner[nearest[i]]
    return [f"n{owner[i]}" for i in labelled]


@dataclass
class Outcome:
    """Every face's person after a path through the product (None: unassigned)."""

    face_ids: list[str]
    persons: list[str | None]

    def labels(self, photos: list[Photo]) -> list[str]:
        of = dict(zip(self.face_ids, self.persons))
        return [of[f"{p.path}#{p.labelled}"] or f"alone:{p.path}" for p in photos]


def _face_ids(photo: Photo) -> list[str]:
    # Named by the photo, not the arrival position: a person's id is then the same in any order.
    return [f"{photo.path}#{i}" for i in range(len(photo.embeddings))]


def _settle(
    fids: list[str],
    persons: dict[str, str | None],
    embeddings: dict[str, np.ndarray],
    good: dict[str, bool],
    index: PersonIndex,
    linkage: Linkage,
) -> None:
    """Settle the faces ``fids`` (the batch) and the faces left unassigned before, as
    `facepic.settle.settle_library` does."""
    batch = set(fids)
    fids = fids + sorted(f for f, p in persons.items() if p is None and f not in batch)
    new = Faces(
        fids,
        np.stack([embeddings[f] for f in fids]).astype(np.float32),
        [persons[f] for f in fids],
        [f.split("#")[0] for f in fids],
        can_found=[good[f] for f in fids],
    )
    taken = {p for f, p in persons.items() if p and f not in batch}

    def new_id(face_id: str, used: set[str]) -> str:
        pid, n = ids.person_id(face_id), 0
        while pid in taken or pid in used:
            n += 1
            pid = ids.person_id(f"{face_id}:settle:{n}")
        return pid

    # All faces of a photo arrive together and nobody corrected anything: the settled persons
    # have no face in the batch's photos and reject nobody.
    def members(pids: list[str]) -> tuple[Faces, set[str]]:
        wanted = set(pids)
        mine = sorted(f for f, p in persons.items() if p in wanted and f not in batch)
        batch.update(mine)
        faces = Faces(
            mine,
            np.stack([embeddings[f] for f in mine]).astype(np.float32),
            [persons[f] for f in mine],
            [f.split("#")[0] for f in mine],
            can_found=[good[f] for f in mine],
        )
        return faces, set()

    library_persons = sum(1 for n in Counter(p for p in persons.values() if p).values() if n > 1)
    decided, result, _ = settle_batch(new, index, linkage, lambda pids: {}, new_id, library_persons, members)
    persons.update(zip(decided.ids, result))


def _index(persons: dict[str, str | None], embeddings: dict[str, np.ndarray], rules: Rules) -> PersonIndex:
    """The index the worker reloads after a settle: every assigned face."""
    index = PersonIndex(rules)
    assigned = sorted(f for f, p in persons.items() if p)
    if assigned:
        index.add_many([persons[f] for f in assigned], np.stack([embeddings[f] for f in assigned]))  # type: ignore[misc]
    return index


def product(
    photos: list[Photo],
    rules: Rules = RULES,
    linkage: Linkage | None = LINKAGE,
    limits: Limits = LIMITS,
    batch: int = 0,
) -> Outcome:
    """The index stage photo by photo, settling after every ``batch`` photos (0: once, at the
    end, as `facepic run` does; ``linkage`` None: never)."""
    index = PersonIndex(rules)
    persons: dict[str, str | None] = {}
    embeddings: dict[str, np.ndarray] = {}
    good: dict[str, bool] = {}
    pending: list[str] = []  # the faces of the photos stored since the last settle
    waiting = 0
    for photo in photos:
        fids = _face_ids(photo)
        can_found = photo.can_found(limits)
        assigned, _, _ = assign_photo(index, fids, {}, photo.embeddings, ids.person_id, can_found)
        persons.update(assigned)
        embeddings.update(zip(fids, photo.embeddings))
        good.update(zip(fids, can_found))
        pending += fids
        waiting += 1
        if linkage is not None and batch and waiting >= batch:
            _settle(pending, persons, embeddings, good, index, linkage)
            pending, waiting = [], 0
            index = _index(persons, embeddings, rules)
    if linkage is not None and pending:
        _settle(pending, persons, embeddings, good, index, linkage)
    face_ids = [f for p in photos for f in _face_ids(p)]
    return Outcome(face_ids, [persons[f] for f in face_ids])


def scores(truth: list[str], found: list[str]) -> dict[str, float]:
    """BCubed precision, recall and F; pairwise F; number of persons."""
    by_truth = Counter(truth)
    by_found = Counter(found)
    both = Counter(zip(truth, found))
    precision = sum(both[(t, f)] / by_found[f] for t, f in zip(truth, found)) / len(truth)
    recall = sum(both[(t, f)] / by_truth[t] for t, f in zip(truth, found)) / len(truth)
    f = 2 * precision * recall / (precision + recall)
    same_both = sum(n * (n - 1) / 2 for n in both.values())
    same_found = sum(n * (n - 1) / 2 for n in by_found.values())
    same_truth = sum(n * (n - 1) / 2 for n in by_truth.values())
    pp = same_both / same_found if same_found else 1.0
    pr = same_both / same_truth if same_truth else 1.0
    pairwise = 2 * pp * pr / (pp + pr) if pp + pr else 0.0
    return {"precision": precision, "recall": recall, "f": f, "pairwise_f": pairwise, "persons": len(by_found)}


def worst_merges(truth: list[str], found: list[str], limit: int = 5) -> list[str]:
    """The persons holding labelled faces of several identities, most mixed first."""
    members: dict[str, Counter] = {}
    for t, f in zip(truth, found):
        members.setdefault(f, Counter())[t] += 1
    mixed = [
        (sum(c.values()) - max(c.values()), sorted(c.items(), key=lambda kv: -kv[1]))
        for c in members.values()
        if len(c) > 1
    ]
    mixed.sort(key=lambda m: (-m[0], m[1]))
    return [" + ".join(f"{name} ({n})" for name, n in items) for _, items in mixed[:limit]]


def _split_photos(photo: Photo, faces: Outcome) -> int:
    """Faces of one photo sharing a person (must be 0)."""
    of = dict(zip(faces.face_ids, faces.persons))
    ps = [of[f] for f in _face_ids(photo) if of[f]]
    return len(ps) - len(set(ps))


def half_of(identity: str) -> str:
    """A fixed half of the identities ("a" or "b"), by a hash of the name."""
    import zlib

    return "ab"[zlib.crc32(identity.encode()) % 2]


def table(
    photos: list[Photo],
    without: int,
    model: str = "buffalo_s",
    orders: int = 5,
    batch: int = 200,
    linkage: Linkage = LINKAGE,
    title: str = "",
    quiet: bool = False,
) -> dict[str, dict]:
    """Score the rows on ``photos``; print them unless ``quiet``."""
    truth = [p.identity for p in photos]
    say = (lambda *a: None) if quiet else print
    say(
        f"{title}{len(photos)} photos with a face, {without} without, {len(set(truth))} identities, "
        f"{sum(len(p.embeddings) for p in photos)} faces, model {model}, {linkage}"
    )
    say(f"{'row':<8} {'BCubed P':>9} {'BCubed R':>9} {'BCubed F':>9} {'pair F':>7} {'persons':>8} {'unassigned':>11}")
    results: dict[str, dict] = {}
    runs = {"naive": None, "online": product(photos, linkage=None), "run": product(photos, linkage=linkage)}
    for name, outcome in runs.items():
        found = naive(photos) if outcome is None else outcome.labels(photos)
        row: dict = scores(truth, found)
        row["unassigned"] = 0 if outcome is None else sum(p is None for p in outcome.persons)
        row["shared_photo"] = 0 if outcome is None else sum(_split_photos(p, outcome) for p in photos)
        row["merges"] = worst_merges(truth, found)
        results[name] = row
        say(
            f"{name:<8} {row['precision']:9.4f} {row['recall']:9.4f} {row['f']:9.4f} "
            f"{row['pairwise_f']:7.4f} {row['persons']:8d} {row['unassigned']:11d}"
        )
    rng = np.random.default_rng(0)
    shuffles = [rng.permutation(len(photos)) for _ in range(orders)]
    for name, every in (("run*", 0), ("queue*", batch)):
        if not orders:
            break
        fs = []
        for order in shuffles:
            shuffled = [photos[i] for i in order]
            fs.append(
                scores([truth[i] for i in order], product(shuffled, linkage=linkage, batch=every).labels(shuffled))["f"]
            )
        results[name] = {"f_min": min(fs), "f_max": max(fs)}
        what = "settled once" if not every else f"settled every {every} photos"
        say(f"{name:<8} F over {orders} shuffled orders, {what}: {min(fs):.4f} .. {max(fs):.4f}")
    for merge in results["run"]["merges"]:
        say(f"  merged in run: {merge}")
    if results["run"]["shared_photo"]:
        say(f"  faces sharing a person with another face of their photo: {results['run']['shared_photo']}")
    return results


# --- leave one folder out --------------------------------------------------------------------------

LABELLED = ("photos", "photos-varied", "lfw-dev", "lfw-large")  # folders of ../shared, each labelled
FLOORS = tuple(round(0.08 + 0.01 * i, 2) for i in range(29))  # 0.08 .. 0.36
THRESHOLDS = tuple(round(0.10 + 0.01 * i, 2) for i in range(25))  # the settings tried: 0.10 .. 0.34
PER_DECADE = tuple(round(0.005 * i, 3) for i in range(25))  # 0 .. 0.12
PLAIN = tuple(round(0.25 + 0.025 * i, 3) for i in range(13))  # the plain rule's thresholds, 0.25 .. 0.55


def settled_once(photos: list[Photo], linkage: Linkage) -> Outcome:
    """What `facepic run` stores on a fresh library: every face settled at once (its persons do
    not depend on the order photos came in, so the index stage before it changes no grouping)."""
    face_ids = [f for p in photos for f in _face_ids(p)]
    new = Faces(
        face_ids,
        np.concatenate([p.embeddings for p in photos]).astype(np.float32),
        [None] * len(face_ids),
        [p.path for p in photos for _ in p.embeddings],
        can_found=[ok for p in photos for ok in p.can_found()],
    )
    persons, _ = settle_faces(new, {}, linkage, lambda face_id, used: ids.person_id(face_id))
    return Outcome(face_ids, persons)


def _fixed(floor: float, margin: float) -> Linkage:
    """A linkage whose floor is ``floor`` whatever the library (one pass)."""
    return Linkage(floor, margin, 0.0, first=floor)


def curves(photos: list[Photo], margin: float, cache: Path | None, name: str, model: str) -> tuple[dict, int]:
    """BCubed scores of the settle at each fixed floor of ``FLOORS`` (with ``margin``), and the
    persons of two faces or more the strict first pass finds; kept in ``cache`` for the code that made them (a
    change to settling makes them again). Floors under 0.18 are skipped past 5,000 faces:
    there every pair of strangers is a candidate, and no setting puts the floor there."""
    import hashlib
    import inspect
    import json

    code = (HERE.parent / "facepic" / "clustering.py").read_bytes() + inspect.getsource(settle_faces).encode()
    key = hashlib.sha256(code + repr((FLOORS, margin, Linkage.first)).encode()).hexdigest()[:12]
    path = cache / f"{name}-{model}-curves-{key}.json" if cache else None
    if path and path.exists():
        saved = json.loads(path.read_text())
        return {float(k): v for k, v in saved["curve"].items()}, saved["persons"]
    truth = [p.identity for p in photos]
    faces = sum(len(p.embeddings) for p in photos)
    curve = {
        floor: scores(truth, settled_once(photos, _fixed(floor, margin)).labels(photos))
        for floor in FLOORS
        if faces <= 5000 or floor >= 0.18
    }
    first = Counter(p for p in settled_once(photos, _fixed(Linkage.first, margin)).persons if p)
    counted = sum(1 for n in first.values() if n > 1)
    print(f"  {name}: scored at {len(curve)} floors; the first pass counts {counted} persons", flush=True)
    if path:
        path.write_text(json.dumps({"curve": {str(k): v for k, v in curve.items()}, "persons": counted}))
    return curve, counted


ROBUST = 0.01  # a setting is judged by its worst F within this of the floor it gives a folder


def choose(folders: dict[str, tuple[list[Photo], dict, int]], margin: float) -> Linkage:
    """The floor's settings (threshold, per decade) with the best mean F over ``folders`` (then
    the best worst F): one set for them all. Each folder's F is its worst within ``ROBUST`` of
    the floor the setting gives it, so that a setting on a plateau beats one on a peak (a peak
    does not carry over to a folder it was not chosen on). The margin is not chosen: it is a
    property of the model's stranger similarities (see ``spread``)."""
    best: tuple[float, float, Linkage] | None = None
    for threshold in THRESHOLDS:
        for per_decade in PER_DECADE:
            linkage = Linkage(threshold, margin, per_decade)
            fs = []
            for _, curve, counted in folders.values():
                floor = linkage.floor(counted)
                rows = [curve.get(round(floor + d, 2)) for d in (-ROBUST, 0.0, ROBUST)]
                if any(r is None for r in rows):
                    break
                fs.append(min(r["f"] for r in rows))  # type: ignore[index]
            else:
                got = (sum(fs) / len(fs), min(fs))
                if best is None or got > best[:2]:
                    best = (*got, linkage)
    assert best is not None, "no setting lies on every folder's curve"
    return best[2]


def spread(photos: list[Photo]) -> float:
    """The standard deviation of two strangers' similarity (the labelled faces)."""
    faces = np.stack([p.embeddings[p.labelled] for p in photos])
    names = np.array([p.identity for p in photos])
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, len(faces), 100_000), rng.integers(0, len(faces), 100_000)
    strangers = names[a] != names[b]
    return float(np.einsum("ij,ij->i", faces[a[strangers]], faces[b[strangers]]).std())


def plain_best(photos: list[Photo]) -> tuple[float, float]:
    """The plain rule at its best threshold for ``photos``: (F, threshold)."""
    truth = [p.identity for p in photos]
    before = _nearest_before(photos)
    return max((scores(truth, naive(photos, t, before))["f"], t) for t in PLAIN)


def shapes(varied: list[Photo], strangers: list[Photo]) -> dict[str, list[Photo]]:
    """Library shapes built from the labelled folders: a family's (its 12 people with 200
    strangers seen once, from LFW) and a few years' (20 photos of each of the 12)."""
    rng = np.random.default_rng(7)
    once: dict[str, Photo] = {}
    known = {p.identity for p in varied}  # LFW holds some of them (tom_hanks): not strangers
    for i in rng.permutation(len(strangers)):
        if strangers[i].identity in known:
            continue
        once.setdefault(strangers[i].identity, strangers[i])
        if len(once) == 200:
            break
    family = varied + list(once.values())
    family = [family[i] for i in rng.permutation(len(family))]
    years = [p for name in sorted(known) for p in [q for q in varied if q.identity == name][:20]]
    return {"family: 12 people, 200 strangers once": family, "years: 12 people x 20 photos": years}


def held_out(shared: Path, cache: Path | None, model: str, runtime: str, orders: int) -> None:
    """The leave-one-folder-out table: for each labelled folder, the floor's settings chosen on
    the others, scored on it through the product's path (index stage, then settling); then the
    product's settings on each folder and on shapes made from them, with shuffled orders and
    the queue's path."""
    margin = LINKAGE.margin
    folders = {}
    for name in LABELLED:
        photos, _ = embed(shared / name, model, cache, runtime)
        folders[name] = (photos, *curves(photos, margin, cache, name, model))
    print(
        "\nthe spread of two strangers' similarity:", ", ".join(f"{n} {spread(f[0]):.3f}" for n, f in folders.items())
    )
    print(f"margin {margin} (not chosen); floor = threshold + per_decade x log10(persons of 2+ faces / 100)\n")
    print(
        f"{'held out':<14} {'chosen on the others':<24} {'F':>7} {'P':>7} {'R':>7} {'plain 0.4':>10} {'plain best':>17}"
    )
    for name, (photos, _, _) in folders.items():
        linkage = choose({k: v for k, v in folders.items() if k != name}, margin)
        truth = [p.identity for p in photos]
        row = scores(truth, product(photos, linkage=linkage).labels(photos))
        plain = scores(truth, naive(photos))["f"]
        best, at = plain_best(photos)
        setting = f"{linkage.threshold:.2f} + {linkage.per_decade:.3f}/decade"
        print(
            f"{name:<14} {setting:<24} {row['f']:7.4f} {row['precision']:7.4f} {row['recall']:7.4f} "
            f"{plain:10.4f} {best:9.4f} at {at:.3f}",
            flush=True,
        )
    print(f"\nchosen on all four: {choose(folders, margin)}; the product's: {LINKAGE}")
    print("\nshapes made from them (not held out: for the shape), the product's settings")
    for name, photos in shapes(folders["photos-varied"][0], folders["lfw-large"][0]).items():
        truth = [p.identity for p in photos]
        row = scores(truth, product(photos, linkage=LINKAGE).labels(photos))
        best, at = plain_best(photos)
        print(
            f"{name:<40} F {row['f']:.4f} P {row['precision']:.4f} R {row['recall']:.4f} persons {row['persons']:4d}"
            f" for {len(set(truth)):4d} | plain 0.4 {scores(truth, naive(photos))['f']:.4f}, best {best:.4f} at {at:.3f}",
            flush=True,
        )
    for name, (photos, _, _) in folders.items():
        print()
        table(photos, 0, model, orders, linkage=LINKAGE, title=f"{name}, the product's settings: ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=Path, default=SHARED)
    parser.add_argument("--model", default="buffalo_s")
    parser.add_argument("--cache", type=Path, help="folder keeping each photo's faces between runs")
    parser.add_argument("--orders", type=int, default=5, help="shuffled arrival orders to score")
    parser.add_argument("--batch", type=int, default=200, help="photos per settle on the queue path")
    parser.add_argument("--halves", action="store_true", help="also score each half of the identities")
    parser.add_argument("--trend", default="", help="identity counts to score, e.g. 100,600,2000")
    parser.add_argument("--link-threshold", type=float, default=LINKAGE.threshold)
    parser.add_argument("--link-margin", type=float, default=LINKAGE.margin)
    parser.add_argument("--link-per-decade", type=float, default=LINKAGE.per_decade)
    parser.add_argument("--runtime", choices=("auto", "openvino", "onnxruntime"), default="auto")
    parser.add_argument("--from-library", type=Path, help="fill --cache from a finished run's data folder first")
    parser.add_argument(
        "--held-out", type=Path, metavar="SHARED", help="the leave-one-folder-out table over SHARED's labelled folders"
    )
    args = parser.parse_args()
    linkage = Linkage(args.link_threshold, args.link_margin, args.link_per_decade)
    if args.held_out:
        return held_out(args.held_out, args.cache, args.model, args.runtime, args.orders)
    if args.from_library:
        print(f"cached {cache_from_library(args.from_library, args.photos, args.cache, args.model)} photos")
    photos, without = embed(args.photos, args.model, args.cache, args.runtime)
    table(photos, without, args.model, args.orders, args.batch, linkage)
    if args.halves:
        for half in "ab":
            print()
            part = [p for p in photos if half_of(p.identity) == half]
            table(part, 0, args.model, args.orders, args.batch, linkage, title=f"half {half}: ")
    if args.trend:
        names = sorted({p.identity for p in photos})
        rng = np.random.default_rng(1)
        for count in (int(c) for c in args.trend.split(",")):
            chosen = set(rng.choice(names, size=min(count, len(names)), replace=False).tolist())
            part = [p for p in photos if p.identity in chosen]
            row = table(part, 0, args.model, 0, args.batch, linkage, quiet=True)
            n, r = row["naive"], row["run"]
            print(
                f"{len(chosen):>5} identities, {len(part):>6} photos: run P {r['precision']:.4f} R {r['recall']:.4f} "
                f"F {r['f']:.4f} | naive P {n['precision']:.4f} R {n['recall']:.4f} F {n['f']:.4f}"
            )


if __name__ == "__main__":
    main()
