"""Open-set identification: "is this person in my gallery, and who?" with a graded confidence.

A gallery search always has a best answer; the question is whether to believe it. The
evidence is the best answer's cosine ``s`` and how far it stands above the gallery's
background for this query (``s - b``, with ``b`` the mean similarity of the sightings ranked
``BACKGROUND_RANKS``: people the query merely resembles; the query path counts a tracklet
once, by its best frame, and each entry without one; the simulation's galleries are single
crops). A :class:`OpenSetRule` maps both
to a confidence in ``[0, 1]`` with a logistic curve fitted on simulated open-set queries
of held-out identities, and accepts an answer when its confidence reaches ``accept``, a
level chosen for a target false-alarm rate (an absent person accepted).

How much the margin counts against the score is chosen for false alarms that hold when the
gallery changes, not for the best fit on one gallery: a bigger gallery holds more look-alikes
(the best cosine of an absent person rises with its size) and a new domain shifts every
cosine (on construction-site CCTV, where helmets and vests make everyone alike, a rule on
the score alone accepted 75% of absent people). :func:`fit_rule` takes the simulated
queries in groups (each dataset at several gallery sizes) and picks, among
``MARGIN_WEIGHTS``, the mix ``score + weight * margin`` whose worst group false-alarm rate
at the pooled accept level is lowest.

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
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np

BACKGROUND_RANKS = (20, 50)  # entries ranked 20..49 (0-based 19..48) are the query's background
MARGIN_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 8.0)  # margin against score, tried in turn
PROTOCOL_SHARE = 0.6  # the open-set protocol's gallery: 60% of the people, the rest absent
GALLERY_SHARES = (0.3, PROTOCOL_SHARE, 0.9)  # gallery sizes simulated for the rule: shares of the people
ENTRIES, TRACKLETS = "entries", "tracklets"  # what a gallery's background counts: each crop, or each visit


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

    @property
    def margin_weight(self) -> float:
        """How much the margin counts against the cosine (``w`` in ``cosine + w * margin``)."""
        return round(self.w_margin / self.w_score, 4) if self.w_score else math.inf

    def accepts(self, score: float, margin: float) -> bool:
        return self.confidence(score, margin) >= self.accept

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None, sightings: str = ENTRIES) -> OpenSetRule | None:
        """The card's rule for galleries of single crops, or (``sightings="tracklets"``) the one
        it holds under ``"tracklets"`` for galleries whose entries come in tracklets; None when
        the card has no such rule."""
        if data and sightings == TRACKLETS:
            data = data.get(TRACKLETS)
        if not data:
            return None
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


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

    def evidence(self, margin_weight: float) -> np.ndarray:
        """``score + margin_weight * margin`` of every sample: what an open-set rule thresholds."""
        return self.score + margin_weight * self.margin

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
    present_share: float = PROTOCOL_SHARE,
    repeats: int = 10,
    seed: int = 0,
    query_camera: int | None = None,
    sightings: str = ENTRIES,
) -> OpenSetSamples:
    """Open-set queries on labelled, embedded images (unit rows): each repeat keeps a random
    ``present_share`` of the people in the gallery; every person queries once with one image
    (of ``query_camera`` if given, else a random one) against the gallery's entries on the
    other cameras, each entry answered on its own (an unlabelled gallery). The background
    counts each entry (``sightings="entries"``: a folder of crops) or each person's visit to a
    camera once, by its best crop (``"tracklets"``: a gallery cut from video, or in MARS
    naming, whose query path counts each tracklet once)."""
    if sightings not in (ENTRIES, TRACKLETS):
        raise ValueError(f"sightings must be {ENTRIES!r} or {TRACKLETS!r}, got {sightings!r}")
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
            counted = sims if sightings == ENTRIES else _best_per_visit(sims, persons[pool], cameras[pool])
            rows.append(
                (sims[order[0]], sims[order[0]] - background_similarity(np.sort(counted)[::-1]),
                 persons[best] == person, person in present)
            )  # fmt: skip
        arr = list(zip(*rows, strict=True))
        out.append(OpenSetSamples(*(np.array(a) for a in arr)))
    return OpenSetSamples.concat(out)


def _best_per_visit(sims: np.ndarray, persons: np.ndarray, cameras: np.ndarray) -> np.ndarray:
    """The best similarity of each (person, camera): one per visit."""
    best: dict[tuple, float] = {}
    for sim, person, camera in zip(sims.tolist(), persons.tolist(), cameras.tolist(), strict=True):
        key = (person, camera)
        best[key] = max(sim, best.get(key, -math.inf))
    return np.array(list(best.values()))


def fit_rule(
    groups: Sequence[OpenSetSamples], false_alarm: float = 0.10, description: str = ""
) -> OpenSetRule:
    """The open-set rule from simulated queries in ``groups`` (e.g. each dataset at each gallery
    size): the evidence ``score + w * margin`` with the ``w`` of ``MARGIN_WEIGHTS`` whose worst
    group false-alarm rate is lowest at the level that accepts ``false_alarm`` of all absent
    people (ties: the smaller ``w``), a logistic confidence of it (target: best answer right and
    person present) and ``accept``, the lowest confidence with pooled false alarms <= ``false_alarm``.

    >>> rng = np.random.default_rng(0)
    >>> def group(shift):  # 200 present people (all answered right) and 200 absent ones
    ...     margin = np.r_[rng.normal(0.3, 0.05, 200), rng.normal(0.1, 0.05, 200)]
    ...     score = margin + shift + rng.normal(0, 0.02, 400)  # the score shifts with the gallery
    ...     present = np.arange(400) < 200
    ...     return OpenSetSamples(score, margin, np.ones(400, bool), present)
    >>> rule = fit_rule([group(0.3), group(0.6)])
    >>> rule.w_margin > rule.w_score > 0  # the margin holds across both galleries, the score does not
    True
    """
    pooled = OpenSetSamples.concat(groups)
    best_weight, best_worst = 0.0, math.inf
    for weight in MARGIN_WEIGHTS:
        level = _level_at_false_alarm(pooled.evidence(weight), pooled.present, false_alarm)
        worst = max(g.rates(g.evidence(weight) >= level)[1] for g in groups)
        if worst < best_worst - 1e-9:
            best_weight, best_worst = weight, worst
    slope, bias = _logistic(pooled.evidence(best_weight), pooled.correct & pooled.present)
    rule = OpenSetRule(slope, slope * best_weight, bias, 0.5, description)
    accept = max(0.0, _level_at_false_alarm(rule.confidences(pooled), pooled.present, false_alarm))
    return OpenSetRule(
        rule.w_score, rule.w_margin, rule.bias, round(math.ceil(accept * 1e4) / 1e4, 4), description
    )


def _level_at_false_alarm(values: np.ndarray, present: np.ndarray, false_alarm: float) -> float:
    """The lowest level at which at most ``false_alarm`` of the absent samples' values reach it."""
    absent = np.sort(values[~present])[::-1]
    allowed = int(np.floor(false_alarm * len(absent)))
    return float(np.nextafter(absent[allowed], np.inf)) if allowed < len(absent) else -math.inf


def _logistic(x: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """(slope, bias) of the logistic regression of ``target`` on one feature (Newton's method,
    a little ridge for stability)."""
    design = np.stack([x, np.ones_like(x)], axis=1).astype(float)
    y = target.astype(float)
    w = np.zeros(2)
    for _ in range(50):
        p = 1 / (1 + np.exp(-np.clip(design @ w, -60, 60)))
        grad = design.T @ (p - y) + 1e-3 * w
        hess = (design * (p * (1 - p))[:, None]).T @ design + 1e-3 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return float(w[0]), float(w[1])


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


def best_dir_with_margin(samples: OpenSetSamples, max_far: float = 0.10) -> dict[str, float]:
    """:func:`best_dir_at_far` of the evidence ``score + w * margin`` at its best ``w`` of
    ``MARGIN_WEIGHTS``, ``w`` and threshold both chosen on these samples: an upper bound for
    every rule of the family :func:`fit_rule` chooses from.

    >>> s = OpenSetSamples(np.array([0.9, 0.7, 0.8, 0.6]), np.array([0.2, 0.3, 0.0, 0.0]),
    ...                    np.array([True, True, True, True]), np.array([True, True, False, False]))
    >>> best_dir_at_far(s, 0.0)["DIR"], best_dir_with_margin(s, 0.0)["DIR"]
    (0.5, 1.0)
    """
    best = {"DIR": -1.0}
    for weight in MARGIN_WEIGHTS:
        found = best_dir_at_far(replace(samples, score=samples.evidence(weight)), max_far)
        if found["DIR"] > best["DIR"]:
            best = {**found, "margin_weight": weight}
    return best


def curve(samples: OpenSetSamples, rule: OpenSetRule, points: int = 101) -> list[dict[str, float]]:
    """DIR and FAR as the acceptance level sweeps 0..1 (for plots and the benchmark)."""
    conf = rule.confidences(samples)
    out = []
    for level in np.linspace(0, 1, points):
        dir_, far = samples.rates(conf >= level)
        out.append({"accept": round(float(level), 4), "DIR": round(dir_, 4), "FAR": round(far, 4)})
    return out
