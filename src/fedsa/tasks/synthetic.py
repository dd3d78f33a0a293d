"""The synthetic sentiment-like task: generated in memory (no files, no network), for tests.

Each sentence mixes cue words of both polarities; its label is the polarity that occurs more
often, so a model must weigh cue words rather than spot one.
"""

from __future__ import annotations

import numpy as np

from fedsa.tasks.examples import Example

_POSITIVE = ("good", "great", "excellent", "wonderful", "delightful", "superb", "charming")
_NEGATIVE = ("bad", "awful", "terrible", "boring", "dreadful", "dull", "clumsy")
_FILLER = ("the", "film", "was", "a", "plot", "and", "story", "actors", "very", "this", "it",
           "ending", "music", "quite", "really", "with", "scenes", "of")  # fmt: skip
SYNTHETIC_VOCAB: tuple[str, ...] = _POSITIVE + _NEGATIVE + _FILLER


def synthetic_examples(n: int, rng: np.random.Generator) -> list[Example]:
    """Generate sentences whose label is whichever cue polarity occurs more often.

    Sentences may hold both polarities, so a model must weigh cue words rather than spot one.
    """
    examples = []
    for _ in range(n):
        label = int(rng.integers(2))
        length = int(rng.integers(4, 11))
        major = int(rng.integers(1, 4))  # 1..3 cue words of the label's polarity
        minor = int(rng.integers(0, major))  # strictly fewer of the opposite polarity
        pos, neg = (major, minor) if label == 1 else (minor, major)
        words = [str(w) for w in rng.choice(_POSITIVE, pos)] + [
            str(w) for w in rng.choice(_NEGATIVE, neg)
        ]
        words += [str(w) for w in rng.choice(_FILLER, max(0, length - len(words)))]
        rng.shuffle(words)
        examples.append(Example(" ".join(words), None, label))
    return examples
