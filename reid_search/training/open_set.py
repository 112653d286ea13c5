"""Open-set identification: "is this person in my gallery, and who?" with a graded confidence.

A gallery search always has a best answer; the question is whether to believe it. The
evidence is the best answer's cosine ``s`` and how far it stands above the gallery's
background for this query (``s - b``, with ``b`` the mean similarity of the entries ranked
``BACKGROUND_RANKS``: people the query merely resembles). A :class:`OpenSetRule` maps both
to a confidence in ``[0, 1]`` with a logistic curve fitted on simulated open-set queries
of held-out identities, and accepts an answer when its confidence reaches ``accept``, a
level chosen for a target false-alarm rate (an absent person accepted).

The measure (Jain & Li's open-set identification): over queries of people in the gallery,
the detection-and-identification rate DIR = the best answer is right **and** accepted; over
queries of people not in it, the false-alarm rate FAR = the best answer is accepted.

Usage::

    >>> rule = OpenSetRule(w_score=20.0, w_margin=10.0, bias=-14.0, accept=0.5)
    >>> round(rule.confidence(0.8, 0.3), 3), rule.accepts(0.5, 0.05)
    (0.993, False)
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np

BACKGROUND_RANKS = (20, 50)  # entries ranked 20..49 (0-based 19..48) are the query's background


def background_similarity(sorted_sims: np.ndarray) -> float:
    """Mean similarity of the entries ranked ``BACKGROUND_RANKS`` (fewer when the gallery is small).

    >>> background_similarity(np.linspace(1, 0, 100)) < 0.85
    True
    """
    sims = np.asarray(sorted_sims, float)
    if len(sims) < 2:
        return 0.0
    lo, hi = BACKGROUND_RANKS
    lo = min(lo - 1, len(sims) // 2)
    return float(sims[lo:hi].mean())


@dataclass(frozen=True)
class OpenSetRule:
    """confidence = sigmoid(w_score * s + w_margin * (s - background) + bias); accept at ``accept``."""

    w_score: float
    w_margin: float
    bias: float
    accept: float
    description: str = ""

    def confidence(self, score: float, margin: float) -> float:
        z = self.w_score * score + self.w_margin * margin + self.bias
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))

    def confidences(self, samples: OpenSetSamples) -> np.ndarray:
        """The confidence of every sample, at once."""
        z = self.w_score * samples.score + self.w_margin * samples.margin + self.bias
        return 1.0 / (1.0 + np.exp(-np.clip(z, -60.0, 60.0)))

    def accepts(self, score: float, margin: float) -> bool:
        return self.confidence(score, margin) >= self.accept

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> OpenSetRule | None:
        return cls(**data) if data else None


@dataclass
class OpenSetSamples:
    """Simulated open-set queries: best score, its margin over the background, right?, present?"""

    score: np.ndarray
    margin: np.ndarray
    correct: np.ndarray  # best answer is the query's person
    present: np.ndarray  # the query's person is in the gallery

    @classmethod
    def concat(cls, parts: Iterable[OpenSetSamples]) -> OpenSetSamples:
        parts = list(parts)
        return cls(
            *(
                np.concatenate([getattr(p, f) for p in parts])
                for f in ("score", "margin", "correct", "present")
            )
        )

    def rates(self, accepted: np.ndarray) -> tuple[float, float]:
        """(DIR, FAR) of an acceptance decision per sample."""
        dir_ = (
            float(np.mean(accepted[self.present] & self.correct[self.present])) if self.present.any() else 0.0
        )
        far = float(np.mean(accepted[~self.present])) if (~self.present).any() else 0.0
        return dir_, far


def simulate(
    vectors: np.ndarray,
    persons: np.ndarray,
    cameras: np.ndarray,
    present_share: float = 0.6,
    repeats: int = 10,
    seed: int = 0,
    query_camera: int | None = None,
) -> OpenSetSamples:
    """Open-set queries on labelled, embedded images (unit rows): each repeat keeps a random
    ``present_share`` of the people in the gallery; every person queries once with one image
    (of ``query_camera`` if given, else a random one) against the gallery's entries on the
    other cameras, each entry answered on its own (an unlabelled gallery)."""
    rng = np.random.default_rng(seed)
    people = np.unique(persons)
    sims_all = vectors @ vectors.T
    out = []
    for _ in range(repeats):
        present = set(rng.permutation(people)[: int(round(present_share * len(people)))].tolist())
        in_gallery = np.array([p in present for p in persons])
        rows = []
        for person in people:
            mine = np.flatnonzero(persons == person)
            if query_camera is not None:
                mine = mine[cameras[mine] == query_camera]
            if len(mine) == 0:
                continue
            q = int(rng.choice(mine))
            pool = np.flatnonzero(in_gallery & (cameras != cameras[q]))
            if len(pool) < 2 or (person in present and not (persons[pool] == person).any()):
                continue
            sims = sims_all[q, pool]
            order = np.argsort(-sims)
            best = pool[order[0]]
            rows.append(
                (sims[order[0]], sims[order[0]] - background_similarity(sims[order]),
                 persons[best] == person, person in present)
            )  # fmt: skip
        arr = list(zip(*rows, strict=True))
        out.append(OpenSetSamples(*(np.array(a) for a in arr)))
    return OpenSetSamples.concat(out)


def fit_rule(samples: OpenSetSamples, false_alarm: float = 0.10, description: str = "") -> OpenSetRule:
    """Fit the logistic confidence (target: best answer right and person present) and choose
    ``accept`` as the lowest confidence whose false-alarm rate is at most ``false_alarm``."""
    x = np.stack([samples.score, samples.margin, np.ones_like(samples.score)], axis=1).astype(float)
    y = (samples.correct & samples.present).astype(float)
    w = np.zeros(3)
    for _ in range(50):  # Newton's method (IRLS) with a little ridge for stability
        p = 1 / (1 + np.exp(-(x @ w)))
        grad = x.T @ (p - y) + 1e-3 * w
        hess = (x * (p * (1 - p))[:, None]).T @ x + 1e-3 * np.eye(3)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    rule = OpenSetRule(float(w[0]), float(w[1]), float(w[2]), 0.5, description)
    conf = rule.confidences(samples)
    absent = np.sort(conf[~samples.present])[::-1]
    allowed = int(np.floor(false_alarm * len(absent)))
    accept = float(np.nextafter(absent[allowed], np.inf)) if allowed < len(absent) else 0.0
    return OpenSetRule(
        rule.w_score, rule.w_margin, rule.bias, round(math.ceil(accept * 1e4) / 1e4, 4), description
    )


def best_dir_at_far(samples: OpenSetSamples, max_far: float = 0.10) -> dict[str, float]:
    """The highest DIR any threshold on the best score reaches with FAR <= ``max_far``, the
    threshold chosen on these very samples: an upper bound for every rule on that score,
    a property of the embedding rather than of a decision rule.

    >>> s = OpenSetSamples(np.array([0.9, 0.8, 0.7, 0.6]), np.zeros(4),
    ...                    np.array([True, False, True, False]), np.array([True, True, False, False]))
    >>> best_dir_at_far(s, 0.5)
    {'DIR': 0.5, 'FAR': 0.0, 'threshold': 0.9}
    """
    best = {"DIR": 0.0, "FAR": 0.0, "threshold": float("inf")}
    for level in np.unique(samples.score)[::-1]:
        dir_, far = samples.rates(samples.score >= level)
        if far > max_far:
            break
        if dir_ > best["DIR"]:
            best = {"DIR": round(dir_, 4), "FAR": round(far, 4), "threshold": round(float(level), 4)}
    return best


def curve(samples: OpenSetSamples, rule: OpenSetRule, points: int = 101) -> list[dict[str, float]]:
    """DIR and FAR as the acceptance level sweeps 0..1 (for plots and the benchmark)."""
    conf = rule.confidences(samples)
    out = []
    for level in np.linspace(0, 1, points):
        dir_, far = samples.rates(conf >= level)
        out.append({"accept": round(float(level), 4), "DIR": round(dir_, 4), "FAR": round(far, 4)})
    return out
