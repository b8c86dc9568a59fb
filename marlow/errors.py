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
