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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from facepic.models import EMBEDDING_DIM
from facepic.settings import Settings


@dataclass(frozen=True)
class Rules:
    """The assignment rules; their defaults are the settings' (``Rules.default()``)."""

    threshold: float  # the most similar face of a person (the design's rule)
    mean_threshold: float  # the mean similarity to all faces of a person
    ambiguity_margin: float  # best and runner-up closer than this: decide later

    @classmethod
    def from_settings(cls, settings: Settings) -> Rules:
        return cls(settings.match_threshold, settings.match_mean_threshold, settings.ambiguity_margin)

    @classmethod
    def default(cls) -> Rules:
        return cls.from_settings(Settings.defaults())


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
        rules: Rules | None = None,
        exact_limit: int = 20_000,
        neighbours: int = 64,
        nprobe: int = 8,
        per_person: int = 256,
        capacity: int = 1024,
    ) -> None:
        self.rules = rules or Rules.default()
        self.exact_limit = exact_limit
        self.neighbours = neighbours
        self.nprobe = nprobe
        self.per_person = per_person
        self._n = 0  # faces added
        self._rows = 0  # faces searched: all in exact mode, up to per_person a person past it
        self._matrix: np.ndarray | None = np.empty((capacity, EMBEDDING_DIM), dtype=np.float32)
        self._codes = np.empty(capacity, dtype=np.int32)  # person code of each searched row
        self._ivf: Any = None  # faiss index once past exact_limit
        self._sims = np.empty(0, dtype=np.float32)  # the last exact comparison
        self._person_ids: list[str] = []
        self._code_of: dict[str, int] = {}
        self._sums = np.zeros((16, EMBEDDING_DIM), dtype=np.float32)
        self._counts = np.zeros(16, dtype=np.int64)  # faces of each person
        self._indexed = np.zeros(16, dtype=np.int64)  # of which searched rows
        self._person_list = np.full(16, -1, dtype=np.int64)  # inverted list of each person's faces
        self._prepared: _Prepared | None = None

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
                self._person_list = np.concatenate([self._person_list, np.full_like(self._person_list, -1)])
        return code

    def add(self, person_id: str, embedding: np.ndarray) -> None:
        self.add_many([person_id], np.asarray(embedding, dtype=np.float32).reshape(1, -1))

    def add_many(self, person_ids: Sequence[str], embeddings: np.ndarray) -> None:
        """Add faces; past ``exact_limit`` faces the inverted-file index is built (once)."""
        embeddings = np.ascontiguousarray(embeddings, dtype=np.float32).reshape(-1, EMBEDDING_DIM)
        count = len(person_ids)
        if count == 0:
            return
        codes = np.fromiter((self._code(p) for p in person_ids), dtype=np.int64, count=count)
        self._add_sums(codes, embeddings)
        self._counts += np.bincount(codes, minlength=len(self._counts))
        self._n += count
        if self._ivf is None and self._n > self.exact_limit and self._build_ivf(codes, embeddings):
            return
        if self._ivf is not None:
            self._ivf_add(codes, embeddings)
        else:
            self._append_rows(codes, embeddings)

    def _add_sums(self, codes: np.ndarray, embeddings: np.ndarray) -> None:
        p = self._prepared
        if p is not None:  # persons known when prepared whose sum changes (newer ones: all)
            p.changed[codes[codes < p.persons]] = True
        if len(codes) < 4096:
            np.add.at(self._sums, codes, embeddings)
            return
        from scipy import sparse  # a dependency of the face engine's scikit-image

        # One sparse product instead of a sort and gather: a million faces add up in under a
        # second instead of ten (copying gigabytes is what costs on a small machine).
        onehot = sparse.csr_matrix(
            (np.ones(len(codes), dtype=np.float32), (codes, np.arange(len(codes)))),
            shape=(len(self._sums), len(codes)),
        )
        self._sums += onehot @ embeddings

    def _take_ranks(self, codes: np.ndarray) -> np.ndarray:
        """Each face's rank among its person's searched faces, counting it in."""
        order = np.argsort(codes, kind="stable")
        ordered = codes[order]
        first = np.searchsorted(ordered, ordered, side="left")
        ranks = np.empty(len(codes), dtype=np.int64)
        ranks[order] = np.arange(len(codes)) - first + self._indexed[ordered]
        self._indexed += np.bincount(codes, minlength=len(self._indexed))
        return ranks

    def _append_rows(self, codes: np.ndarray, embeddings: np.ndarray) -> None:
        assert self._matrix is not None
        end = self._rows + len(codes)
        if end > len(self._matrix):
            matrix = np.empty((max(len(self._matrix) * 2, end), EMBEDDING_DIM), dtype=np.float32)
            matrix[: self._rows] = self._matrix[: self._rows]
            self._matrix = matrix
        self._matrix[self._rows : end] = embeddings
        self._append_codes(codes)

    def _build_ivf(self, codes: np.ndarray, embeddings: np.ndarray) -> bool:
        """Move the faces held so far and the batch ``codes``/``embeddings`` being added into
        an inverted-file index; False (the exact search goes on) without faiss."""
        try:
            import faiss
        except ImportError:  # the exact search still works, only slower
            self.exact_limit = math.inf  # type: ignore[assignment]
            return False
        assert self._matrix is not None
        held_codes, held = self._codes[: self._rows].astype(np.int64), self._matrix[: self._rows]
        persons = len(self._person_ids)
        live = self._counts[:persons] > 0
        nlist = int(min(4096, 2 * math.sqrt(self._n), self._n // 40))
        quantizer = faiss.IndexFlatIP(EMBEDDING_DIM)
        ivf = faiss.IndexIVFFlat(quantizer, EMBEDDING_DIM, nlist, faiss.METRIC_INNER_PRODUCT)
        ivf.cp.niter = 10
        ivf.cp.min_points_per_centroid = 1  # few persons per list is intended, not a warning
        # The lists are trained on the persons' mean faces where there are enough persons, and
        # every face is filed in the list of its person's mean: the few lists a new face probes
        # hold the persons it could join (bench/matching.py: identical decisions at nprobe 8,
        # against 98% when trained on a sample of faces), and filing costs one search per
        # person, not per face.
        if live.sum() >= nlist:
            means = self._sums[:persons][live]
            sample = means / np.linalg.norm(means, axis=1, keepdims=True)
        else:
            rng = np.random.default_rng(0)
            pool = np.concatenate([held, embeddings[: nlist * 40]]) if len(held) else embeddings
            sample = pool[rng.choice(len(pool), min(len(pool), nlist * 40), replace=False)]
        ivf.train(np.ascontiguousarray(sample, dtype=np.float32))
        ivf.nprobe = self.nprobe
        self._ivf = ivf
        self._quantizer = quantizer  # faiss does not own it from Python
        self._indexed[:] = 0
        self._codes = np.empty(0, dtype=np.int32)
        self._rows = 0
        self._matrix = None
        self._ivf_add(held_codes, held)
        self._ivf_add(codes, embeddings)
        return True

    def _ivf_add(self, codes: np.ndarray, embeddings: np.ndarray, chunk: int = 65536) -> None:
        """File faces in the list of their person (a new person's list is its first face's);
        a person is searched through at most ``per_person`` of its faces (its mean still
        counts them all): someone in ten thousand photos must not fill the lists a new face
        scans."""
        import faiss

        kept = self._take_ranks(codes) < self.per_person
        everyone = bool(kept.all())
        keep = np.flatnonzero(kept)
        for start in range(0, len(keep), chunk):
            if everyone:  # a view, not a copy
                part_codes, part = codes[start : start + chunk], embeddings[start : start + chunk]
            else:
                rows = keep[start : start + chunk]
                part_codes, part = codes[rows], np.ascontiguousarray(embeddings[rows])
            lists = self._person_list[part_codes]
            new = np.unique(part_codes[lists < 0])  # a person's first faces decide its list
            if len(new):
                means = np.ascontiguousarray(self._sums[new], dtype=np.float32)
                self._person_list[new] = self._quantizer.search(means, 1)[1][:, 0]
                lists = self._person_list[part_codes]
            ids = np.arange(self._rows, self._rows + len(part), dtype=np.int64)
            self._ivf.add_core(len(part), faiss.swig_ptr(part), faiss.swig_ptr(ids), faiss.swig_ptr(lists))
            self._append_codes(part_codes)

    def _append_codes(self, codes: np.ndarray) -> None:
        """The person codes of the rows being added (the last step of adding rows)."""
        if self._rows + len(codes) > len(self._codes):
            grown = np.empty(max(2 * len(self._codes), self._rows + len(codes), 1024), dtype=np.int32)
            grown[: self._rows] = self._codes[: self._rows]
            self._codes = grown
        self._codes[self._rows : self._rows + len(codes)] = codes
        self._rows += len(codes)

    # --- deciding ----------------------------------------------------------------

    def prepare(self, embeddings: np.ndarray) -> None:
        """Compare faces about to be decided (``decide(..., row=i)`` for row i of
        ``embeddings``) with every searched face and person in one pass over the index, instead
        of one pass per face (the index worker's batches). What is added meanwhile is
        compared at each decision. Exact mode only; the products are matrix products, as at
        each decision, so a face is decided alike in any batch."""
        self._prepared = None
        if self._ivf is not None or self._n == 0:
            return
        assert self._matrix is not None
        faces = _two_rows(np.ascontiguousarray(embeddings, dtype=np.float32).reshape(-1, EMBEDDING_DIM))
        persons = len(self._person_ids)
        n = len(embeddings)
        self._prepared = _Prepared(
            self._rows,
            persons,
            (faces @ self._matrix[: self._rows].T)[:n],
            (faces @ self._sums[:persons].T)[:n],
            np.zeros(persons, dtype=bool),
        )

    def unprepare(self) -> None:
        """Drop what ``prepare`` computed (a batch's worth of products) once its faces are decided."""
        self._prepared = None

    def _face_sims(self, embedding: np.ndarray, row: int | None) -> tuple[np.ndarray, np.ndarray | None]:
        """Similarities to every searched face, and the dot products with every person's sum
        when prepared (else None)."""
        assert self._matrix is not None
        p = self._prepared
        if row is None or p is None:
            return self._matrix[: self._rows] @ embedding, None
        face = _two_rows(embedding.reshape(1, -1))
        sims = np.concatenate([p.face_sims[row], (face @ self._matrix[p.rows : self._rows].T)[0]])
        persons = len(self._person_ids)
        dots = np.empty(persons, dtype=np.float32)
        dots[: p.persons] = p.person_dots[row]
        again = np.concatenate([np.flatnonzero(p.changed), np.arange(p.persons, persons)])
        if len(again):
            dots[again] = (face @ self._sums[again].T)[0]
        return sims, dots

    def _candidates(self, embedding: np.ndarray, row: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Person codes, their nearest-face and mean similarities, for the persons worth
        considering (all of them in exact mode)."""
        persons = len(self._person_ids)
        dots = None
        if self._ivf is None:
            assert self._matrix is not None
            sims, dots = self._face_sims(embedding, row)
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
            dot = dots[codes] if dots is not None else self._sums[codes] @ embedding
            mean = np.where(counts > 0, dot / np.maximum(counts, 1), -np.inf)
        return codes, nearest, mean.astype(np.float32)

    def _nearest(self, codes: np.ndarray, nearest: np.ndarray, i: int) -> float:
        """The nearest-face similarity of candidate ``i``, computed if it was skipped."""
        if i < 0:
            return -1.0
        if np.isfinite(nearest[i]) or self._ivf is not None:
            return float(nearest[i])
        mine = self._sims[self._codes[: self._rows] == codes[i]]
        return float(mine.max()) if len(mine) else -1.0

    def near(self, embeddings: np.ndarray, floor: float, block: int = 256) -> set[str]:
        """The persons whose nearest face or mean similarity to one of ``embeddings`` is above
        ``floor`` (past ``exact_limit``, among the persons of each one's nearest faces)."""
        persons = len(self._person_ids)
        if self._n == 0 or len(embeddings) == 0:
            return set()
        embeddings = np.ascontiguousarray(embeddings, dtype=np.float32).reshape(-1, EMBEDDING_DIM)
        found = np.zeros(persons, dtype=bool)
        counts = np.maximum(self._counts[:persons], 1)
        for start in range(0, len(embeddings), block):
            part = embeddings[start : start + block]
            if self._ivf is None:
                assert self._matrix is not None
                sims = part @ self._matrix[: self._rows].T
                found[self._codes[: self._rows][(sims > floor).any(axis=0)]] = True
                codes = np.arange(persons)
            else:
                k = min(self.neighbours, self._rows)
                _, rows = self._ivf.search(part, k)
                codes = np.unique(self._codes[rows[rows >= 0]])
            means = (part @ self._sums[codes].T) / counts[codes]
            found[codes[(means > floor).any(axis=0) & (self._counts[codes] > 0)]] = True
        return {self._person_ids[c] for c in np.flatnonzero(found)}

    def person_sum(self, person_id: str) -> tuple[np.ndarray, int]:
        """The sum of a person's faces and how many there are."""
        code = self._code_of.get(person_id)
        if code is None:
            return np.zeros(EMBEDDING_DIM, dtype=np.float32), 0
        return self._sums[code].copy(), int(self._counts[code])

    def decide(self, embedding: np.ndarray, exclude: Iterable[str] = (), row: int | None = None) -> Decision:
        """The person this face joins, or None (nobody fits, or ambiguous), never one of
        ``exclude``. ``row``: the face's row in the last ``prepare``."""
        if self._n == 0:
            return Decision(None)
        embedding = np.asarray(embedding, dtype=np.float32)
        codes, nearest, mean = self._candidates(embedding, row)
        rules = self.rules
        ok = (nearest > rules.threshold) | (mean > rules.mean_threshold)
        excluded = [self._code_of[p] for p in exclude if p in self._code_of]
        if excluded and self._ivf is None:  # every person is a candidate: codes[i] == i
            ok[excluded] = False
        elif excluded:
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
                return Decision(
                    None,
                    float(mean[best]),
                    self._nearest(codes, nearest, best),
                    runner_up=self._person_ids[codes[second]],
                    best=chosen,
                )
        return Decision(chosen, float(mean[best]), self._nearest(codes, nearest, best), best=chosen)


@dataclass
class _Prepared:
    """Faces compared with the index in one pass (``PersonIndex.prepare``)."""

    rows: int  # searched faces then
    persons: int  # persons then
    face_sims: np.ndarray  # faces x rows
    person_dots: np.ndarray  # faces x persons: with the sum of each person's faces
    changed: np.ndarray  # bool per person known then: its sum changed since


def _two_rows(faces: np.ndarray) -> np.ndarray:
    """At least two rows, so that numpy multiplies as a matrix product (one row would go to a
    matrix-vector product, which rounds differently)."""
    return faces if len(faces) > 1 else np.concatenate([faces, faces])


def assign_photo(
    index: PersonIndex,
    face_ids: Sequence[str],
    stored: Mapping[str, str | None],
    embeddings: np.ndarray,
    new_person_id: Callable[[str], str],
    can_found: Sequence[bool] | None = None,
    rows: Sequence[int] | None = None,
) -> tuple[dict[str, str | None], dict[str, str], dict[str, Decision]]:
    """Person of each face of one photo (None: unassigned), the faces that founded new
    persons, and the decision of every face decided now.

    Faces ``stored`` by an earlier try keep what they had; two faces of one photo never join
    one person; a face that fits nobody founds a person, whose id ``new_person_id`` derives
    from the face, unless ``can_found`` says it is too poor to (too small, blurred, unsure).
    Faces are decided best first (``can_found`` ones first, in order), so a clear face of a
    photo claims its person before a poor one can. ``rows``: each face's row in the index's
    last ``prepare``.
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
        decision = index.decide(embeddings[i], exclude=in_photo, row=rows[i] if rows is not None else None)
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
