"""The `NATError` family: every failure a user can cause ends in one of these.

The CLI turns a `NATError` into one clear line on stderr and a non-zero exit code, so messages must say
what was wrong *and* what was expected or how to fix it. Programming errors stay ordinary exceptions.
"""

from __future__ import annotations


class NATError(Exception):
    """Base class for errors caused by user input (configs, files, data, checkpoints)."""


class ConfigError(NATError):
    """A configuration value, subnet description or genome is invalid."""


class CheckpointError(NATError):
    """A checkpoint file is missing, truncated, of the wrong kind, or does not fit the supernet."""


class DataError(NATError):
    """A dataset is missing, has the wrong layout, or holds unreadable content."""


class DistributedError(NATError):
    """A multi-process (torchrun) job could not start, or a process died or hung during it."""
