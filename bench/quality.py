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
from facepic.settle import Linkage, settle_batch

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
    from facepic.decode import decode

    decoded = decode(path, settings.detect_size, settings.max_pixels)
    faces = engine.detect(decoded.rgb)
    if not faces:
        return None
    h, w = decoded.rgb.shape[:2]
    centre = np.array([w / 2, h / 2])
    labelled = min(range(len(faces)), key=lambda i: np.linalg.norm((faces[i].box[:2] + faces[i].box[2:]) / 2 - centre))
    measured = []
    for f in faces:  # exactly as facepic.pipeline.detect assesses a face
        q = assess(decoded.rgb, f.box, decoded.to_full(f.box), decoded.to_full(f.landmarks), f.score)
        measured.append([q.size, q.sharpness, q.frontal, q.score])
    return np.array([f.embedding for f in faces], dtype=np.float32), labelled, np.array(measured)


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


def naive(photos: list[Photo], threshold: float = 0.4) -> list[str]:
    """The design's rule, face by face, nothing else."""
    total = sum(len(p.embeddings) for p in photos)
    known = np.empty((max(total, 1), photos[0].embeddings.shape[1] if photos else 512), dtype=np.float32)
    owners = np.empty(max(total, 1), dtype=np.int64)
    n = persons = 0
    labels = []
    for photo in photos:
        for i, e in enumerate(photo.embeddings):
            sims = known[:n] @ e
            if n and sims.max() > threshold:
                person = int(owners[int(sims.argmax())])
            else:
                persons += 1
                person = persons
            known[n], owners[n] = e, person
            n += 1
            if i == photo.labelled:
                labels.append(f"n{person}")
    return labels


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
    def members(pids: list[str]) -> Faces:
        wanted = set(pids)
        mine = sorted(f for f, p in persons.items() if p in wanted and f not in batch)
        batch.update(mine)
        return Faces(
            mine,
            np.stack([embeddings[f] for f in mine]).astype(np.float32),
            [persons[f] for f in mine],
            [f.split("#")[0] for f in mine],
            can_found=[good[f] for f in mine],
        )

    decided, result, _ = settle_batch(new, index, linkage, lambda pids: {}, new_id, len(persons), members)
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
    args = parser.parse_args()
    linkage = Linkage(args.link_threshold, args.link_margin, args.link_per_decade)
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
