"""How the ``rollway`` command ends: exit 0 when it did what was asked, 1 when it could not
(a file, a config, the server, a deploy that did not converge), 2 when it was asked wrongly
(argparse's own usage errors, and options that do not fit together).

Commands raise these instead of printing and returning a code, so ``main`` is the one place
that turns a failure into a message and an exit status.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2


class CommandError(Exception):
    """A failure at run time, printed as ``rollway: <message>``; exit 1."""


class UsageError(Exception):
    """Options that do not fit together or a malformed option value, printed as
    ``rollway: <message>``; exit 2, like argparse's own usage errors."""
