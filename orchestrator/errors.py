"""User-facing errors the CLI prints as one line (`error: ...`, exit 2) instead of a traceback."""


class DataError(ValueError):
    """Input data that cannot be used; the message names the file or item and what is wrong."""
