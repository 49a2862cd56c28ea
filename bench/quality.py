"""How well persons match identities: BCubed and pairwise scores of the assignment rules.

Every face of every photo is assigned, photo by photo in folder order, as the index stage does;
the score counts the labelled face of each photo (identity = folder name; the labelled face is
the one nearest the photo's centre). Rows:

- ``naive``: the design's rule alone (join the most similar known face above 0.4, else found a
  person), the baseline;
- ``shipped``: what `facepic.matching.assign_photo` does on the index queue, photo by photo
  (nearest face or mean similarity, best mean wins, ambiguous faces deferred, two faces of one
  photo are two people); a face left unassigned counts as a person of its own;
- ``recluster``: ``shipped`` followed by `facepic recluster` (`facepic.clustering`);
- ``recluster*``: the same on the photos in shuffled orders (min..max F over the orders): how
  much the result still depends on arrival order.

    python bench/quality.py                   # ../shared/photos
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

from facepic import ids  # noqa: E402
from facepic.clustering import Faces, recluster  # noqa: E402
from facepic.matching import PersonIndex, Rules, assign_photo  # noqa: E402
from facepic.quality import FaceQuality, Limits, assess  # noqa: E402

SHARED = HERE.parent.parent / "shared" / "photos"


@dataclass
class Photo:
    identity: str
    embeddings: np.ndarray  # every face of the photo, N x 512
    labelled: int  # index of the face nearest the centre
    quality: np.ndarray | None = None  # N x 4: size, sharpness, frontal, detector score
    path: str = ""  # relative to the folder

    def can_found(self, limits: Limits = Limits()) -> list[bool]:
        """The index stage's quality gate for each face (all True without measurements)."""
        if self.quality is None:
            return [True] * len(self.embeddings)
        return [FaceQuality(*map(float, q)).can_found(limits) for q in self.quality]


def _detect(engine, settings, path: Path) -> tuple[np.ndarray, int, np.ndarray] | None:  # noqa: ANN001
    """What the detect stage keeps of one photo: embeddings, the labelled face, quality."""
    from facepic.decode import decode

    decoded = decode(path, settings.detect_size, settings.max_pixels)
    faces = engine.detect(decoded.rgb)
    if not faces:
        return None
    h, w = decoded.rgb.shape[:2]
    centre = np.array([w / 2, h / 2])
    labelled = min(range(len(faces)),
                   key=lambda i: np.linalg.norm((faces[i].box[:2] + faces[i].box[2:]) / 2 - centre))
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
    data = np.load(path, allow_pickle=False)
    found: dict[str, tuple[np.ndarray, int, np.ndarray] | None] = {}
    ends = np.cumsum(data["counts"])
    for rel, end, count, labelled in zip(data["paths"].tolist(), ends, data["counts"], data["labelled"]):
        start = end - count
        found[rel] = (data["embeddings"][start:end], int(labelled), data["quality"][start:end]) if count else None
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


def embed(folder: Path, model: str = "buffalo_s", cache: Path | None = None) -> tuple[list[Photo], int]:
    """Faces of every labelled photo under ``folder``; also how many photos had none. With
    ``cache`` (a folder), what was found is kept in a file there and read back next time."""
    from facepic.detect import FaceEngine
    from facepic.models import resolve
    from facepic.settings import Settings

    paths = [p for p in sorted(folder.glob("*/*")) if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp")]
    cache_file = _cache_file(cache, folder, model) if cache else None
    found = _read_cache(cache_file) if cache_file else {}
    missing = [p for p in paths if str(p.relative_to(folder)) not in found]
    if missing:
        settings = Settings.load(env_file=None)
        engine = FaceEngine(resolve(model, settings.model_root), settings.detect_size, 2)
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


def naive(photos: list[Photo], threshold: float) -> list[str]:
    """The design's rule, face by face, nothing else."""
    known: list[np.ndarray] = []
    owners: list[int] = []
    labels = []
    persons = 0
    for photo in photos:
        for i, e in enumerate(photo.embeddings):
            sims = np.array([float(k @ e) for k in known]) if known else np.array([])
            if len(sims) and sims.max() > threshold:
                person = owners[int(sims.argmax())]
            else:
                persons += 1
                person = persons
            known.append(e)
            owners.append(person)
            if i == photo.labelled:
                labels.append(f"n{person}")
    return labels


def _incremental(photos: list[Photo], rules: Rules) -> tuple[list[str], list[str | None]]:
    """Face ids and persons of every face, assigned photo by photo."""
    index = PersonIndex(rules)
    face_ids: list[str] = []
    persons: list[str | None] = []
    for n, photo in enumerate(photos):
        fids = [f"photo{n}-f{i}" for i in range(len(photo.embeddings))]
        assigned, _, _ = assign_photo(index, fids, {}, photo.embeddings, ids.person_id)
        face_ids += fids
        persons += [assigned[f] for f in fids]
    return face_ids, persons


def _labels(photos: list[Photo], face_ids: list[str], persons: list[str | None]) -> list[str]:
    of = dict(zip(face_ids, persons))
    labels = []
    for n, photo in enumerate(photos):
        fid = f"photo{n}-f{photo.labelled}"
        labels.append(of[fid] or f"alone-{fid}")
    return labels


def shipped(photos: list[Photo], threshold: float) -> list[str]:
    face_ids, persons = _incremental(photos, Rules(threshold=threshold))
    return _labels(photos, face_ids, persons)


def reclustered(photos: list[Photo], threshold: float) -> list[str]:
    rules = Rules(threshold=threshold)
    face_ids, persons = _incremental(photos, rules)
    faces = Faces(face_ids, np.concatenate([p.embeddings for p in photos]).astype(np.float32),
                  persons, [f.split("-f")[0] for f in face_ids])

    def new_id(face_id: str, taken: set[str]) -> str:
        return ids.person_id(face_id + ":recluster")

    return _labels(photos, face_ids, recluster(faces, set(), rules, new_id))


ALGORITHMS = {"naive": naive, "shipped": shipped, "recluster": reclustered}
ORDERS = 5


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


def table(photos: list[Photo], without: int, threshold: float, model: str) -> dict[str, dict[str, float]]:
    truth = [p.identity for p in photos]
    identities = len(set(truth))
    print(f"{len(photos)} photos with a face, {without} without, {identities} identities, "
          f"model {model}, threshold {threshold}")
    print(f"{'algorithm':<10} {'BCubed P':>9} {'BCubed R':>9} {'BCubed F':>9} {'pair F':>7} {'persons':>8}")
    results = {}
    for name, algorithm in ALGORITHMS.items():
        row = scores(truth, algorithm(photos, threshold))
        results[name] = row
        print(f"{name:<10} {row['precision']:9.3f} {row['recall']:9.3f} {row['f']:9.3f} "
              f"{row['pairwise_f']:7.3f} {row['persons']:8d}")
    rng = np.random.default_rng(0)
    for name in ("shipped", "recluster"):
        fs = []
        for _ in range(ORDERS):
            order = rng.permutation(len(photos))
            shuffled = [photos[i] for i in order]
            fs.append(scores([truth[i] for i in order], ALGORITHMS[name](shuffled, threshold))["f"])
        results[name + "*"] = {"f_min": min(fs), "f_max": max(fs)}
        print(f"{name + '*':<10} F over {ORDERS} shuffled orders: {min(fs):.3f} .. {max(fs):.3f}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=Path, default=SHARED)
    parser.add_argument("--model", default="buffalo_s")
    parser.add_argument("--threshold", type=float, default=0.4)
    args = parser.parse_args()
    photos, without = embed(args.photos, args.model)
    table(photos, without, args.threshold, args.model)


if __name__ == "__main__":
    main()



