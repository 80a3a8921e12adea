"""A user objective for the tests: importable as ``user_objectives:total_kernel``."""

from nat.space import Subnet


def total_kernel(subnet: Subnet) -> float:
    return float(sum(subnet.ks))
