"""User objectives for the tests: importable as ``user_objectives:total_kernel`` and so on."""

from nat.space import Subnet


def total_kernel(subnet: Subnet) -> float:
    return float(sum(subnet.ks))


def nan_objective(subnet: Subnet) -> float:
    """Not a number for every subnet (tests/test_validation.py)."""
    return float("nan")


def nan_below_largest_resolution(subnet: Subnet) -> float:
    """NaN for subnets below 28 px (micro space): fine on the largest subnet, NaN on some candidates."""
    return float("nan") if subnet.r < 28 else float(subnet.r)


def raising_objective(subnet: Subnet) -> float:
    return 1 / 0


def string_objective(subnet: Subnet) -> float:
    return "abc"  # type: ignore[return-value]
