"""The one exception type meant for users: the CLI prints its message on one line and exits 2."""

from __future__ import annotations


class CellcheckError(Exception):
    """A problem with the user's input that stops the audit itself (not a finding about one case).

    The message names the file and the fix, in one line.
    """

    exit_code = 2
