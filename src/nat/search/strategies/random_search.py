"""Random search: the baseline every NAS method must beat. Uniform subnets that meet the constraints."""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence

from nat.errors import ConfigError
from nat.search.archive import Record
from nat.search.strategies.base import Proposal, StrategyBase, register_strategy
from nat.space.subnet import Subnet

log = logging.getLogger(__name__)

#: uniform draws allowed per wanted candidate before random search gives up
DRAWS_PER_CANDIDATE = 1000


@register_strategy
class RandomStrategy(StrategyBase):
    """``k`` uniformly sampled feasible subnets that the archive does not hold yet.

    Sampling stops after ``DRAWS_PER_CANDIDATE * k`` draws: if none of them met the constraints, the
    bounds leave (almost) nothing of the space and the run fails with a `ConfigError`; if feasible draws
    were all in the archive already, the space is (nearly) used up and the proposal is what was found.
    """

    name = "random"

    def ask(self, archive: Sequence[Record], iteration: int) -> Proposal:
        rng = random.Random(self.seed(iteration))
        known = {r.subnet for r in archive}
        k = self.candidates
        out: list[Subnet] = []
        feasible_draws = 0
        draws = DRAWS_PER_CANDIDATE * k
        for _ in range(draws):
            if len(out) >= k:
                break
            s = Subnet.sample(self.space, rng)
            if not self.problem.satisfies(s):
                continue
            feasible_draws += 1
            if s not in known and s not in out:
                out.append(s)
        if len(out) < k:
            if not feasible_draws:
                raise ConfigError(
                    f"random search: none of {draws} uniformly drawn subnets meets the constraints "
                    f"{self.problem.constraints}; loosen them (or use strategy: nat)"
                )
            log.warning(
                "random search found only %d new feasible subnet(s) of %d in %d draws (the archive holds "
                "most feasible subnets of the space)",
                len(out),
                k,
                draws,
            )
        return Proposal(out, {"strategy": self.name})
