"""Canaries: synthetic defects made from a workspace's own samples, to measure each signal's power.

Every diagnosis also scores a few canaries of kinds each axis should catch, next to the clean
samples they were made from (their sources). How well a signal ranks the canaries below (or
above) their sources is its health on this data (middo_core.health). A canary is a `Sample` that
is never stored as one: it lives in the `canaries` table only, so it can never enter a dataset
version, an export, a training set, a threshold's mean and deviation, or a flag count.

Kinds, by the axis that should flag them (why each is a defect of that axis: docs/SIGNALS.md):
- quality: `swapped` (the response of the sample with the most similar instruction), `truncated`
  (the response cut mid-sentence), `shuffled` (the response's sentences in another order),
  `looped` (the response's first sentence repeated, as a degenerate generation does), `echo`
  (the instruction repeated back instead of an answer).
- complexity: `noised` (typos in most words of the response), `scrambled` (the response's words
  in random order): text no model can learn to predict, so its loss stays high before and after
  fine-tuning, which is the paper's definition of a complex sample.
- diversity: `transliterated` (the instruction and input written in Cyrillic letters): the same
  request in a script no other sample uses, so it has no near neighbour in the model's
  embedding space, which is the paper's definition of a sparse sample.

The set is deterministic for (seed, iteration, the dataset's ids): sources are drawn with a
seeded generator from the sorted ids of the samples eligible for each kind.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from middo_core.sample import Sample

AXIS_OF_KIND: dict[str, str] = {
    "swapped": "quality", "truncated": "quality", "shuffled": "quality", "looped": "quality",
    "echo": "quality", "noised": "complexity", "scrambled": "complexity",
    "transliterated": "diversity",
}
KINDS: tuple[str, ...] = tuple(AXIS_OF_KIND)
BUDGET = 0.10  # canaries per sample, spread over the kinds (before the per-kind bounds)
DONOR_POOL = 20_000  # samples searched for the most similar instruction of a swapped canary

_WORD = re.compile(r"\S+")
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=\S)")
_CYRILLIC = str.maketrans(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "абцдефгхийклмнопярстуввхызАБЦДЕФГХИЙКЛМНОПЯРСТУВВХЫЗ")


@dataclass(frozen=True)
class Canary:
    kind: str
    source_id: str
    sample: Sample

    @property
    def id(self) -> str:
        return self.sample.id

    @property
    def axis(self) -> str:
        return AXIS_OF_KIND[self.kind]


def per_kind(n_samples: int, kinds: int, min_per_kind: int = 2, max_per_kind: int = 64,
             fixed: int | None = None) -> int:
    """Canaries of each kind for a dataset of n_samples: `fixed`, or BUDGET of the samples over
    the kinds (rounded down), within [min_per_kind, max_per_kind]."""
    if fixed is not None:
        return fixed
    share = int(BUDGET * n_samples / max(kinds, 1))
    return max(min_per_kind, min(max_per_kind, share))


def make_canaries(samples: dict[str, Sample], count: int, seed: int = 0,
                  kinds: Iterable[str] = KINDS) -> list[Canary]:
    """Up to `count` canaries of each kind from `samples` (id -> sample). A kind with fewer
    eligible sources gets fewer; a canary equal to any sample is dropped (it is no defect)."""
    kinds = list(kinds)
    unknown = sorted(set(kinds) - set(AXIS_OF_KIND))
    if unknown:
        raise ValueError(f"unknown canary kinds {unknown}: choose from {', '.join(KINDS)}")
    ids = sorted(samples)
    out: list[Canary] = []
    seen = set(ids)
    for kind in kinds:
        rng = random.Random(f"{seed}:{kind}")
        eligible = [i for i in ids if _ELIGIBLE[kind](samples[i])]
        rng.shuffle(eligible)
        if kind == "swapped":  # donors come from a bounded pool: the search stays cheap at 1M
            pool = set(eligible[: 2 * count]) | set(rng.sample(ids, min(len(ids), DONOR_POOL)))
            donors = _SimilarInstructions(sorted(pool), samples)
        made = 0
        for sid in eligible:
            if made == count:
                break
            source = samples[sid]
            if kind == "swapped":
                donor = donors.most_similar(sid) if sid in donors.index else None
                defect = source.model_copy(update={"output": samples[donor].output}) if donor else None
            else:
                defect = _MAKE[kind](source, rng)
            if defect is None or defect.id in seen:
                continue
            seen.add(defect.id)
            out.append(Canary(kind, sid, defect))
            made += 1
    return out


# --- the kinds ------------------------------------------------------------------------------


def sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE.split(text.strip()) if s]


def _truncated(s: Sample, rng: random.Random) -> Sample:
    words = list(_WORD.finditer(s.output))
    cut = max(2, int(len(words) * rng.uniform(0.3, 0.6)))
    return s.model_copy(update={"output": s.output[: words[cut - 1].end()].rstrip(".,:;!?")})


def _shuffled(s: Sample, rng: random.Random) -> Sample | None:
    parts = sentences(s.output)
    order = list(range(len(parts)))
    for _ in range(10):
        rng.shuffle(order)
        if order != sorted(order):
            return s.model_copy(update={"output": " ".join(parts[i] for i in order)})
    return None


def _looped(s: Sample, rng: random.Random) -> Sample:
    first = sentences(s.output)[0]
    times = max(3, round(1.5 * len(s.output) / max(len(first), 1)))
    return s.model_copy(update={"output": " ".join([first] * times)})


def _echo(s: Sample, rng: random.Random) -> Sample:
    return s.model_copy(update={"output": s.prompt})


def _noised(s: Sample, rng: random.Random) -> Sample:
    def typo(word: str) -> str:
        if len(word) < 3 or rng.random() > 0.7:
            return word
        i = rng.randrange(len(word) - 1)
        edit = rng.randrange(3)
        if edit == 0:  # swap two neighbouring letters
            return word[:i] + word[i + 1] + word[i] + word[i + 2:]
        if edit == 1:  # drop one
            return word[:i] + word[i + 1:]
        return word[:i] + word[i] + word[i:]  # double one

    return s.model_copy(update={"output": _WORD.sub(lambda m: typo(m.group()), s.output)})


def _scrambled(s: Sample, rng: random.Random) -> Sample:
    words = s.output.split()
    rng.shuffle(words)
    return s.model_copy(update={"output": " ".join(words)})


def _transliterated(s: Sample, rng: random.Random) -> Sample:
    return s.model_copy(update={"instruction": s.instruction.translate(_CYRILLIC),
                                "input": s.input.translate(_CYRILLIC)})


_MAKE: dict[str, Callable[[Sample, random.Random], Sample | None]] = {
    "truncated": _truncated, "shuffled": _shuffled, "looped": _looped, "echo": _echo,
    "noised": _noised, "scrambled": _scrambled, "transliterated": _transliterated,
}
_ELIGIBLE: dict[str, Callable[[Sample], bool]] = {
    "swapped": lambda s: bool(s.output.strip()),
    "truncated": lambda s: len(s.output.split()) >= 8,
    "shuffled": lambda s: len(sentences(s.output)) >= 3,
    "looped": lambda s: len(sentences(s.output)) >= 2,
    "echo": lambda s: bool(s.output.strip()) and s.output.strip() != s.prompt.strip(),
    "noised": lambda s: len(s.output.split()) >= 5,
    "scrambled": lambda s: len(s.output.split()) >= 8,
    "transliterated": lambda s: sum(c.isascii() and c.isalpha() for c in s.prompt) >= 10,
}


class _SimilarInstructions:
    """For a sample, the other sample with the most similar instruction (TF-IDF cosine over
    word unigrams and bigrams) whose response differs."""

    def __init__(self, ids: list[str], samples: dict[str, Sample]) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.ids = ids
        self.samples = samples
        self.index = {sid: i for i, sid in enumerate(ids)}
        texts = [samples[i].prompt for i in ids]
        self.matrix = TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True).fit_transform(texts)

    def most_similar(self, sid: str) -> str | None:
        row = self.index[sid]
        sims = (self.matrix[row] @ self.matrix.T).toarray().ravel()
        sims[row] = -1.0
        own = self.samples[sid].output.strip()
        for j in sims.argsort()[::-1]:
            if sims[j] < 0:
                return None
            if self.samples[self.ids[j]].output.strip() != own:
                return self.ids[j]
        return None
