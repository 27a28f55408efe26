"""Errors users see. Each names the problem and the fix, so nobody has to read our code to act."""

from __future__ import annotations


class DbtWatcherError(Exception):
    """Base class of every error raised by dbt-watcher."""


class ConfigurationError(DbtWatcherError, ValueError):
    """Bad input found while building the DAG: raised at parse time, shown as a DAG import error."""

    def __init__(self, problem: str, fix: str) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem}\nHow to fix: {fix}")


class ParameterError(ConfigurationError, TypeError):
    """A call the signature refuses (a keyword that names no parameter, a positional argument): a
    ConfigurationError with the fix, and still the TypeError Python raises there, so code catching that
    keeps working."""


class DbtInvocationError(DbtWatcherError):
    """dbt could not run (bad profile, parse error), or stopped after it started building without returning
    (it raised, or was killed): the node results it reported before are all there is."""
