"""User-facing errors. The CLI turns these into one line on stderr and exit code 2."""


class MarlowError(Exception):
    """Base class of errors caused by user input (config, task, checkpoint), not by a bug."""


class ConfigError(MarlowError):
    """Unknown algorithm/task/key, wrong type, or an unsupported combination."""


class CheckpointError(MarlowError):
    """A checkpoint or run directory that cannot be read."""


class TrainingDiverged(MarlowError):
    """A NaN/inf appeared in the losses; the last good checkpoint is kept."""


class RunInterrupted(MarlowError):
    """SIGINT or SIGTERM during training: the current chunk was finished and checkpointed."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


def did_you_mean(word: str, choices, n: int = 3) -> str:
    """``"; did you mean 'x'?"`` (or ``'x' or 'y'``) for the closest of ``choices`` to ``word`` (difflib,
    case-insensitive), or ``""`` when none is close: the tail of an "unknown name" error, so a typo gets a
    suggestion instead of a dump of every name."""
    import difflib

    choices = [str(c) for c in choices]
    lowered = {c.lower(): c for c in choices}
    word = str(word).lower()
    for long, short in _SYNONYMS:  # names from other libraries: learning_rate for lr
        word = word.replace(long, short)
    close = difflib.get_close_matches(word, list(lowered), n=n, cutoff=0.6)
    if not close:
        return ""
    return "; did you mean " + " or ".join(repr(lowered[c]) for c in close) + "?"


_SYNONYMS = (("learning_rate", "lr"), ("discount", "gamma"))
