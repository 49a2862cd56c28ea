"""Person assignment: which person a new face belongs to, decided against every known face.

A person is represented by all of its faces, through two numbers per candidate person:

- ``nearest``: the similarity of its most similar face (the design's rule: > ``threshold``);
- ``mean``: the mean similarity to all of its faces, ``e . sum(faces) / n`` (average linkage;
  the sum per person is kept, so this costs one dot product per person).

A person is a candidate when either number is above its limit; among candidates the face
joins the one with the highest ``mean``. When the runner-up's ``mean`` is within
``ambiguity_margin`` of the best, the face joins neither (it is stored unassigned with both
candidates noted, and `facepic recluster` decides later): an ambiguous face must not glue two
people together, nor go to one of them by the luck of arrival order. ``bench/quality.py`` is
how these rules and limits were chosen.

Search: below ``exact_limit`` known faces every face is compared (one matrix product). Above,
the faces live in an inverted-file index (faiss ``IndexIVFFlat``, inner product) and only the
persons of the ``neighbours`` most similar faces are candidates; ``bench/matching.py`` measures
how often that decides exactly as the full comparison does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from facepic.detect import EMBEDDING_DIM


@dataclass(frozen=True)
class Rules:
    threshold: float = 0.4  # the most similar face of a person (the design's rule)
    mean_threshold: float = 0.25  # the mean similarity to all faces of a person
    ambiguity_margin: float = 0.03  # best and runner-up closer than this: decide later


@dataclass(frozen=True)
class Decision:
    person_id: str | None  # None: nobody fits, or ambiguous
    mean: float = -1.0  # of the chosen (or best) candidate
    nearest: float = -1.0
    runner_up: str | None = None  # set when ambiguous
    best: str | None = None  # the best candidate, also when not chosen (ambiguous)

    @property
    def ambiguous(self) -> bool:
        return self.person_id is None and self.runner_up is not None


class PersonIndex:
    """Every assigned face of one model and, per person, the sum and count of its faces."""

    def __init__(
        self,
        rules: Rules = Rules(),
        exact_limit: int = 20_000,
        neighbours: int = 64,
        nprobe: int = 8,
        per_person: int = 256,
        capacity: int = 1024,
    ) -> None:
        self.rules = rules
        self.exact_limit = exact_limit
        self.neighbours = neighbours
        self.nprobe = nprobe
        self.per_person = per_person
        self._n = 0  # faces added
        self._rows = 0  # faces searched: all in exact mode, up to per_person a person past it
        self._matrix: np.ndarray | None = np.empty((capacity, EMBEDDING_DIM), dtype=np.float32)
        self._codes = np.empty(capacity, dtype=np.int32)  # person code of each searched row
        self._ivf = None  # faiss index once past exact_limit
        self._sims = np.empty(0, dtype=np.float32)  # the last exact comparison
        self._person_ids: list[str] = []
        self._code_of: dict[str, int] = {}
        self._sums = np.zeros((16, EMBEDDING_DIM), dtype=np.float32)
        self._counts = np.zeros(16, dtype=np.int64)  # faces of each person
        self._indexed = np.zeros(16, dtype=np.int64)  # of which searched rows

    def __len__(self) -> int:
        return self._n

    @property
    def persons(self) -> int:
        return int(np.count_nonzero(self._counts[: len(self._person_ids)]))

    @property
    def approximate(self) -> bool:
        return self._ivf is not None

    def memory_bytes(self) -> int:
        if self._ivf is not None:
            faces = self._rows * (EMBEDDING_DIM * 4 + 8)  # vectors and their ids in the lists
        else:
            faces = self._matrix.nbytes  # type: ignore[union-attr]
        return faces + self._codes.nbytes + self._sums.nbytes + self._counts.nbytes + self._indexed.nbytes

    # --- adding faces ----------------------------------------------------------------

    def _code(self, person_id: str) -> int:
        code = self._code_of.get(person_id)
        if code is None:
            code = len(self._person_ids)
            self._person_ids.append(person_id)
            self._code_of[person_id] = code
            if code >= len(self._sums):
                self._sums = np.concatenate([self._sums, np.zeros_like(self._sums)])
                self._counts = np.concatenate([self._counts, np.zeros_like(self._counts)])
                self._indexed = np.concatenate([self._indexed, np.zeros_like(self._indexed)])
        return code

    def add(self, person_id: str, embedding: np.ndarray) -> None:
        self.add_many([person_id], np.asarray(embedding, dtype=np.float32).reshape(1, -1))

    def add_many(self, person_ids: Sequence[str], embeddings: np.ndarray) -> None:
        """Add faces; past ``exact_limit`` faces the inverted-file index is built (once)."""
        embeddings = np.ascontiguousarray(embeddings, dtype=np.float32).reshape(-1, EMBEDDING_DIM)
        count = len(person_ids)
        if count == 0:
            return
        codes = np.fromiter((self._code(p) for p in person_ids), dtype=np.int32, count=count)
        order = np.argsort(codes, kind="stable")
        uniq, starts = np.unique(codes[order], return_index=True)
        self._sums[uniq] += np.add.reduceat(embeddings[order], starts, axis=0)
        np.add.at(self._counts, codes, 1)
        if self._ivf is not None:
            keep = self._take_ranks(codes) < self.per_person
            codes, embeddings = codes[keep], embeddings[keep]
        self._append_rows(codes, embeddings)
        self._n += count
        if self._ivf is None and self._n > self.exact_limit:
            self._build_ivf()

    def _take_ranks(self, codes: np.ndarray) -> np.ndarray:
        """Each face's rank among its person's searched faces, counting it in."""
        ranks = np.empty(len(codes), dtype=np.int64)
        indexed = self._indexed
        for i, c in enumerate(codes.tolist()):
            ranks[i] = indexed[c]
            indexed[c] += 1
        return ranks

    def _append_rows(self, codes: np.ndarray, embeddings: np.ndarray) -> None:
        count = len(codes)
        if self._rows + count > len(self._codes):
            capacity = max(len(self._codes) * 2, self._rows + count)
            grown = np.empty(capacity, dtype=np.int32)
            grown[: self._rows] = self._codes[: self._rows]
            self._codes = grown
            if self._matrix is not None:
                matrix = np.empty((capacity, EMBEDDING_DIM), dtype=np.float32)
                matrix[: self._rows] = self._matrix[: self._rows]
                self._matrix = matrix
        self._codes[self._rows : self._rows + count] = codes
        if self._ivf is not None:
            if count:
                self._ivf.add(embeddings)
        else:
            assert self._matrix is not None
            self._matrix[self._rows : self._rows + count] = embeddings
        self._rows += count

    def _build_ivf(self) -> None:
        try:
            import faiss  # type: ignore[import-not-found]
        except ImportError:  # the exact search still works, only slower
            self.exact_limit = math.inf  # type: ignore[assignment]
            return
        assert self._matrix is not None
        # A person is searched through at most ``per_person`` of its faces (its mean still
        # counts them all): someone in ten thousand photos must not fill the lists a new
        # face scans.
        codes = self._codes[: self._rows]
        self._indexed[:] = 0
        keep = self._take_ranks(codes) < self.per_person
        faces = self._matrix[: self._rows][keep]
        nlist = int(min(4096, 2 * math.sqrt(len(faces)), len(faces) // 40))
        quantizer = faiss.IndexFlatIP(EMBEDDING_DIM)
        ivf = faiss.IndexIVFFlat(quantizer, EMBEDDING_DIM, nlist, faiss.METRIC_INNER_PRODUCT)
        ivf.cp.niter = 10
        ivf.cp.min_points_per_centroid = 1  # few persons per list is intended, not a warning
        # The lists are trained on the persons' mean faces where there are enough persons:
        # a face then lands in the list of its person's neighbourhood, and the few lists a
        # new face probes hold the persons it could join (bench/matching.py: 100% identical
        # decisions at nprobe 8, against 98% when trained on a sample of faces).
        live = self._counts[: len(self._person_ids)] > 0
        if live.sum() >= nlist:
            means = self._sums[: len(self._person_ids)][live]
            sample = means / np.linalg.norm(means, axis=1, keepdims=True)
        else:
            rng = np.random.default_rng(0)
            sample = faces[rng.choice(len(faces), min(len(faces), nlist * 40), replace=False)]
        ivf.train(np.ascontiguousarray(sample, dtype=np.float32))
        ivf.add(faces)
        ivf.nprobe = self.nprobe
        self._ivf = ivf
        self._quantizer = quantizer  # faiss does not own it from Python
        self._codes = codes[keep].copy()
        self._rows = len(faces)
        self._matrix = None

    # --- deciding ----------------------------------------------------------------

    def _candidates(self, embedding: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Person codes, their nearest-face and mean similarities, for the persons worth
        considering (all of them in exact mode)."""
        persons = len(self._person_ids)
        if self._ivf is None:
            assert self._matrix is not None
            sims = self._matrix[: self._rows] @ embedding
            # Only faces above the threshold can make their person a candidate: the nearest
            # face of the others is looked up for the one decision that reports it.
            nearest = np.full(persons, -np.inf, dtype=np.float32)
            hits = np.flatnonzero(sims > self.rules.threshold)
            np.maximum.at(nearest, self._codes[hits], sims[hits])
            codes = np.arange(persons)
            self._sims = sims
        else:
            k = min(self.neighbours, self._rows)
            found, rows = self._ivf.search(embedding.reshape(1, -1), k)
            keep = rows[0] >= 0
            row_codes = self._codes[rows[0][keep]]
            codes = np.unique(row_codes)
            nearest = np.full(len(codes), -np.inf, dtype=np.float32)
            np.maximum.at(nearest, np.searchsorted(codes, row_codes), found[0][keep])
        counts = self._counts[codes]
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(counts > 0, (self._sums[codes] @ embedding) / np.maximum(counts, 1), -np.inf)
        return codes, nearest, mean.astype(np.float32)

    def _nearest(self, codes: np.ndarray, nearest: np.ndarray, i: int) -> float:
        """The nearest-face similarity of candidate ``i``, computed if it was skipped."""
        if i < 0:
            return -1.0
        if np.isfinite(nearest[i]) or self._ivf is not None:
            return float(nearest[i])
        mine = self._sims[self._codes[: self._rows] == codes[i]]
        return float(mine.max()) if len(mine) else -1.0

    def decide(self, embedding: np.ndarray, exclude: Iterable[str] = ()) -> Decision:
        """The person this face joins, or None (nobody fits, or ambiguous), never one of
        ``exclude``."""
        if self._n == 0:
            return Decision(None)
        embedding = np.asarray(embedding, dtype=np.float32)
        codes, nearest, mean = self._candidates(embedding)
        rules = self.rules
        ok = (nearest > rules.threshold) | (mean > rules.mean_threshold)
        excluded = [self._code_of[p] for p in exclude if p in self._code_of]
        if excluded:
            ok &= ~np.isin(codes, excluded)
        if not ok.any():
            best = int(np.argmax(mean)) if len(mean) else -1
            return Decision(None, float(mean[best]) if best >= 0 else -1.0, self._nearest(codes, nearest, best))
        ranked = np.where(ok, mean, -np.inf)
        order = np.argsort(-ranked, kind="stable")
        best = int(order[0])
        chosen = self._person_ids[codes[best]]
        if ok.sum() > 1:
            second = int(order[1])
            if ranked[best] - ranked[second] < rules.ambiguity_margin:
                return Decision(None, float(mean[best]), self._nearest(codes, nearest, best),
                                runner_up=self._person_ids[codes[second]], best=chosen)
        return Decision(chosen, float(mean[best]), self._nearest(codes, nearest, best), best=chosen)


def assign_photo(
    index: PersonIndex,
    face_ids: Sequence[str],
    stored: Mapping[str, str | None],
    embeddings: np.ndarray,
    new_person_id: Callable[[str], str],
    can_found: Sequence[bool] | None = None,
) -> tuple[dict[str, str | None], dict[str, str], dict[str, Decision]]:
    """Person of each face of one photo (None: unassigned), the faces that founded new
    persons, and the decision of every face decided now.

    Faces ``stored`` by an earlier try keep what they had; two faces of one photo never join
    one person; a face that fits nobody founds a person, whose id ``new_person_id`` derives
    from the face, unless ``can_found`` says it is too poor to (too small, blurred, unsure).
    Faces are decided best first (``can_found`` ones first, in order), so a clear face of a
    photo claims its person before a poor one can.
    """
    persons: dict[str, str | None] = {fid: stored[fid] for fid in face_ids if fid in stored}
    founders: dict[str, str] = {}
    decisions: dict[str, Decision] = {}
    in_photo: set[str] = {p for p in persons.values() if p}
    good = list(can_found) if can_found is not None else [True] * len(face_ids)
    for i in sorted(range(len(face_ids)), key=lambda i: not good[i]):
        fid = face_ids[i]
        if fid in persons:
            continue
        decision = index.decide(embeddings[i], exclude=in_photo)
        person_id = decision.person_id
        if person_id is None and not decision.ambiguous and good[i]:
            person_id = new_person_id(fid)
            founders[person_id] = fid
        decisions[fid] = decision
        persons[fid] = person_id
        if person_id is not None:
            index.add(person_id, embeddings[i])
            in_photo.add(person_id)
    return persons, founders, decisions
