"""Where every random choice of a run comes from: seeds derived from the run seed and a named stream.

Each phase of iteration ``i`` draws from its own stream, ``SeedSequence([seed, i, tag])``, so a phase can
be recomputed alone after a resume (or on another rank) and give the same result; nothing carries a
random state from one phase to the next.

The tag values are part of every result: changing one changes every archive nat has produced. They
are the values the first versions of nat used under other names, kept so that stored figures stay
reproducible. One wrinkle comes with them: adaptation's stream is offset by the index of the
supernet's width, so the second width's adaptation seed equals the accuracy surrogate's seed of the
same iteration. The two feed unrelated consumers (a genome sampler and a cross-validation shuffle), so
nothing correlates that matters, and a fix would change every figure.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class SeedTag(IntEnum):
    """The named random streams of one iteration."""

    ADAPT = 0  # online adaptation of the supernet of width index w: tag ADAPT + w
    SURROGATE_TOP1 = 1  # adaptive switching's folds and the accuracy surrogate's own randomness
    SURROGATE_LATENCY = 2  # the same for the latency surrogate
    CANDIDATES = 3  # the strategy's proposal: NSGA-III / GA, candidate selection, random sampling
    REEVALUATION_SAMPLE = 4  # reevaluate: predicted: which members beyond the front are re-measured
    FRESH_WEIGHTS = 99  # initial weights of a supernet built from scratch (in place of the iteration)
    NEW_CLASSIFIER = 98  # a pretrained supernet's new classifier for the task's classes (likewise)


def derive_seed(seed: int, *parts: int) -> int:
    """A stable 32-bit seed for ``(seed, *parts)`` (numpy's SeedSequence hashing)."""
    return int(np.random.SeedSequence([seed, *parts]).generate_state(1)[0])


def iteration_seed(seed: int, iteration: int, tag: SeedTag, index: int = 0, task: int = 0) -> int:
    """The seed of stream ``tag`` (plus ``index``, for per-width streams) in iteration ``iteration``;
    ``task``: the task's place in a many-task run (task 0's streams are those of a single-task run, the
    others' carry the task index as a further part, so no two tasks share a stream)."""
    if task == 0:
        return derive_seed(seed, iteration, int(tag) + index)
    return derive_seed(seed, iteration, int(tag) + index, task)


def initial_sample_seed(seed: int) -> int:
    """The seed of the initial archive's random subnets (iteration 0's sample)."""
    return derive_seed(seed, 0)


def fresh_weights_seed(seed: int, width: float) -> int:
    """The seed of a from-scratch supernet's initial weights for one width multiplier."""
    return derive_seed(seed, SeedTag.FRESH_WEIGHTS, int(width * 100))


def classifier_seed(seed: int, width: float, task: int = 0) -> int:
    """The seed of the classifier a pretrained supernet of ``width`` gets for a task whose class count
    differs from the checkpoint's (``task``: its place in a many-task run; task 0's is a single-task
    run's, so a task's first search and its place in a many-task run start from the same head)."""
    parts = (SeedTag.NEW_CLASSIFIER, int(round(width * 100)))
    return derive_seed(seed, *parts) if task == 0 else derive_seed(seed, *parts, task)
