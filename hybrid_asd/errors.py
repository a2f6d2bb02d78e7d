"""Exception types that the CLI turns into one clear line (no traceback)."""


class HybridASDError(Exception):
    """Base class for errors caused by input, data or configuration, not by a bug."""


class ConfigError(HybridASDError, ValueError):
    """A config key that does not exist, a bad value, or an unknown component name."""


class DataError(HybridASDError, ValueError):
    """A missing, empty, corrupt or unexpected data file; the message names the file."""


class ScoreError(HybridASDError, ValueError):
    """A score file with missing rows, non-numeric or NaN values; the message names file and row."""


class StageError(HybridASDError, RuntimeError):
    """A stage whose inputs are missing (an earlier stage did not run) or whose config conflicts."""
