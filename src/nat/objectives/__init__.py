"""Objectives of the search: exact complexity (MAdds, params) and latency (measured, or predicted from
a latency lookup table built on the target device)."""

from nat.objectives.complexity import ComplexityTable, Cost, profile_subnet
from nat.objectives.latency_table import LatencyPredictor, LatencyTable

__all__ = ["ComplexityTable", "Cost", "LatencyPredictor", "LatencyTable", "profile_subnet"]
