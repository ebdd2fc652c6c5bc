"""User-facing errors: raised anywhere in mmpt, printed by the CLI as one line with a non-zero exit."""


class MmptError(Exception):
    """A problem with the user's input or environment, explained in one line."""


class DataError(MmptError):
    """The dataset, manifest or a row in it is unusable as given."""


class ConfigError(MmptError):
    """A model, training or run configuration is invalid or inconsistent."""
