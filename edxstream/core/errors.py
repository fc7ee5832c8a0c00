"""The error the user can fix: one ``edxstream:`` line, exit status 2."""


class UserError(Exception):
    """An error whose message tells the user what to do; the CLI prints it without a
    traceback and exits 2."""
