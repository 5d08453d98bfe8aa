"""The one exception type that command-line tools turn into a one-line message."""


class InputError(Exception):
    """Bad user input (a file, a flag, a folder); the message names it and fits on one line."""
