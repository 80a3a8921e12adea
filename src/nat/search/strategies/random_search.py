"""Random search: the baseline every NAS method must beat. Uniform subnets that meet the constraints."""

from __future__ import annotations

import random
from collections.abc import Sequence

from nat.search.archive import Record
from nat.search.strategies.base import Proposal, StrategyBase
from nat.space.subnet import Subnet


class RandomStrategy(StrategyBase):
    """``k`` uniformly sampled feasible subnets that the archive does not hold yet."""

    name = "random"

    def ask(self, archive: Sequence[Record], iteration: int) -> Proposal:
        rng = random.Random(self.seed(iteration))
        known = {r.subnet for r in archive}
        out: list[Subnet] = []
        while len(out) < self.config.candidates_per_iteration:
            s = Subnet.sample(self.space, rng)
            if s not in known and s not in out and self.problem.satisfies(s):
                out.append(s)
        return Proposal(out, {"strategy": self.name})
