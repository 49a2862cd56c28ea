"""Synthetic face embeddings: unit vectors clustered around one centre per person.

Two faces of one person have a cosine similarity near ``a1 * a2`` (each face's weight on
its person's centre, drawn from 0.6..0.85: about 0.35..0.7, like real faces of one person
under buffalo models); faces of two persons are near 0. Queries are new faces, 80% of known
persons and 20% of persons never seen.
"""

from __future__ import annotations

import numpy as np

DIM = 512


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _faces(rng: np.random.Generator, centres: np.ndarray, owners: np.ndarray) -> np.ndarray:
    out = np.empty((len(owners), DIM), dtype=np.float32)
    for start in range(0, len(owners), 65536):
        own = owners[start : start + 65536]
        weight = rng.uniform(0.6, 0.85, size=(len(own), 1)).astype(np.float32)
        noise = _unit(rng.standard_normal((len(own), DIM), dtype=np.float32))
        out[start : start + len(own)] = _unit(weight * centres[own] + np.sqrt(1 - weight**2) * noise)
    return out


def clustered(faces: int, persons: int, queries: int, seed: int = 0) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(known faces N x 512, their person ids, query faces Q x 512)."""
    rng = np.random.default_rng(seed)
    centres = _unit(rng.standard_normal((persons + queries, DIM), dtype=np.float32))
    # Persons have unequal sizes, as in a real library (a few people in many photos, most
    # in a few): log-normal, the largest person about a hundred times the median.
    sizes = rng.lognormal(0.0, 1.5, size=persons)
    owners = rng.choice(persons, size=faces, p=sizes / sizes.sum())
    known = _faces(rng, centres, owners)
    seen = rng.random(queries) < 0.8
    query_owners = np.where(seen, owners[rng.integers(0, faces, queries)], persons + np.arange(queries))
    return known, [f"p{o}" for o in owners], _faces(rng, centres, query_owners)
