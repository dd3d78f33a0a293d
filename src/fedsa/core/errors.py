"""User-facing error types.

Every mistake a user can make (bad config, missing data, malformed update) raises a subclass of
:class:`FedsaError` whose message is one line naming the problem and the fix. The CLI prints that
line and exits with status 2, so users never see a traceback for their own mistakes; ``assert``
remains reserved for internal invariants.
"""


class FedsaError(Exception):
    """Base class of errors caused by user input; the message is shown as is."""


class ConfigError(FedsaError):
    """A configuration key, type or value is invalid."""


class DataError(FedsaError):
    """A data directory, file or its contents is missing or malformed."""


class UpdateError(FedsaError):
    """A client update does not match what the server expects (keys, shapes, dtypes, values)."""


class CheckpointError(FedsaError):
    """A checkpoint cannot be written (disk full, permissions) or no valid one can be read."""
