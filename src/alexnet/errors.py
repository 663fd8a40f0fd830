"""The one exception type for user mistakes: the CLI prints its message on one line, no traceback."""


class UserError(Exception):
    """A mistake in what the user asked for (a flag, a file, a config key), with a message that names it."""
