"""The exception types that command-line tools turn into a one-line message."""


class InputError(Exception):
    """Bad user input (a file, a flag, a folder); the message names it and fits on one line."""


class OutputError(InputError):
    """A file could not be written (full disk, I/O error, read-only folder); the message names the
    file and the reason. Command-line tools exit with code 1 (input errors: 2)."""
