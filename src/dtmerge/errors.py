"""User-facing errors.

A `DtmError` is a mistake the user can fix (bad config, bad data line, missing model...).
The CLI prints its message without a traceback; anything else is a bug and keeps its traceback.
"""


class DtmError(Exception):
    """An error caused by user input; the message says what is wrong and what to do."""


class ConfigError(DtmError):
    """The configuration is invalid."""


class DataError(DtmError):
    """The instruction data cannot be read or normalised."""


class ModelError(DtmError):
    """A model cannot be found, loaded or is incompatible."""


class MergeError(DtmError):
    """Models cannot be merged (mismatching tensors, unsupported adapters...)."""


class TrainingError(DtmError):
    """Training diverged (NaN/inf loss) or failed for a reason the user can act on."""


class DamagedStateError(DtmError):
    """A file dtmerge itself wrote into a run directory is truncated or garbled (a disk that
    filled, a copy cut short, a hand edit); the message names the file and how to recover."""
