"""Objectives of the search: exact complexity (MAdds, params); accuracy and latency land beside it."""

from nat.objectives.complexity import ComplexityTable, Cost, profile_subnet

__all__ = ["ComplexityTable", "Cost", "profile_subnet"]
