"""User-facing errors: the CLI prints their message on one line and exits with code 2."""


class ConfigError(ValueError):
    """Bad input from the user: an unknown name, a value out of range, a missing or unreadable file."""


class DataNotFound(ConfigError):
    """A dataset's files are not on this machine. A run stops on it; a dry run can still show the plan (a
    login node or laptop often lacks the data that the compute nodes have)."""
