"""User-facing errors: printed as one line by the CLI, never as a traceback."""


class UserError(Exception):
    """Bad input from the user (a file, a flag, a dataset). The message names what and what was expected."""

    exit_code = 2
