"""The one exception type that means "the user asked for something we cannot do".

The command line turns it into a single line on stderr and exit code 2; any other exception is a bug
and keeps its traceback.
"""


class UsageError(ValueError):
    """Bad input from the user: the message says what is wrong and how to fix it, in one line."""
