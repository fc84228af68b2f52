"""User-facing errors: the CLI prints their message on one line and exits with code 2."""


class ConfigError(ValueError):
    """Bad input from the user: an unknown name, a value out of range, a missing or unreadable file."""
