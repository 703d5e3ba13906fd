"""Exception type for every user-facing error in shearcorr."""

__all__ = ["ShearcorrError"]


class ShearcorrError(ValueError):
    """A problem with user input, stated in one line that names the problem and the fix.

    The CLI prints ``shearcorr: error: <message>`` and exits with status 2 for these.
    """
