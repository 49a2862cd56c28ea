"""Person matching: cosine similarity against every known face, held in memory as one matrix.

Embeddings are unit vectors, so cosine similarity is a dot product. The matrix grows by
doubling; the person of each row is kept as an integer code so exclusions are vectorised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

from facepic.detect import EMBEDDING_DIM


@dataclass(frozen=True)
class Match:
    person_id: str | None  # None: no known person is similar enough
    similarity: float


class Matcher:
    def __init__(self, threshold: float, capacity: int = 1024) -> None:
        self.threshold = threshold
        self._matrix = np.empty((capacity, EMBEDDING_DIM), dtype=np.float32)
        self._codes = np.empty(capacity, dtype=np.int32)
        self._n = 0
        self._person_ids: list[str] = []
        self._code_of: dict[str, int] = {}

    def __len__(self) -> int:
        return self._n

    def _code(self, person_id: str) -> int:
        code = self._code_of.get(person_id)
        if code is None:
            code = len(self._person_ids)
            self._person_ids.append(person_id)
            self._code_of[person_id] = code
        return code

    def add(self, person_id: str, embedding: np.ndarray) -> None:
        self.add_many([person_id], np.asarray(embedding, dtype=np.float32).reshape(1, -1))

    def add_many(self, person_ids: list[str], embeddings: np.ndarray) -> None:
        count = len(person_ids)
        if self._n + count > len(self._matrix):
            capacity = max(len(self._matrix) * 2, self._n + count)
            matrix = np.empty((capacity, EMBEDDING_DIM), dtype=np.float32)
            matrix[: self._n] = self._matrix[: self._n]
            codes = np.empty(capacity, dtype=np.int32)
            codes[: self._n] = self._codes[: self._n]
            self._matrix, self._codes = matrix, codes
        self._matrix[self._n : self._n + count] = embeddings
        self._codes[self._n : self._n + count] = [self._code(p) for p in person_ids]
        self._n += count

    def match(self, embedding: np.ndarray, exclude: set[str] = frozenset()) -> Match:  # type: ignore[assignment]
        """The most similar known face's person above the threshold, skipping ``exclude``."""
        if self._n == 0:
            return Match(None, -1.0)
        sims = self._matrix[: self._n] @ np.asarray(embedding, dtype=np.float32)
        if exclude:
            codes = [self._code_of[p] for p in exclude if p in self._code_of]
            if codes:
                sims = np.where(np.isin(self._codes[: self._n], codes), -np.inf, sims)
        best = int(np.argmax(sims))
        similarity = float(sims[best])
        if similarity > self.threshold:
            return Match(self._person_ids[self._codes[best]], similarity)
        return Match(None, similarity)


def assign_photo(
    matcher: Matcher,
    face_ids: Sequence[str],
    stored: Mapping[str, str | None],
    embeddings: np.ndarray,
    new_person_id: Callable[[str], str],
) -> tuple[dict[str, str], dict[str, str]]:
    """Person of each face of one photo, and the faces that founded new persons.

    Faces with a ``stored`` person (an earlier try) keep it; two faces of one photo never
    join the same person; a face with no known person above the threshold founds one, whose
    id ``new_person_id`` derives from the face.
    """
    persons: dict[str, str] = {fid: pid for fid, pid in stored.items() if pid}
    founders: dict[str, str] = {}
    in_photo: set[str] = set(persons.values())
    for i, fid in enumerate(face_ids):
        if fid in persons:
            continue
        match = matcher.match(embeddings[i], exclude=in_photo)
        person_id = match.person_id or new_person_id(fid)
        if match.person_id is None:
            founders[person_id] = fid
        matcher.add(person_id, embeddings[i])
        in_photo.add(person_id)
        persons[fid] = person_id
    return persons, founders
