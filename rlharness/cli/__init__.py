"""The ``rlharness`` command line: run and sweep experiments, show studies, validate specs,
compare and report results.

Heavy libraries are imported inside the commands so that ``rlharness --help``
answers at once. Bad input exits with status 2 and a message naming the
field, never a traceback (`rlharness.cli.console`).
"""

from rlharness.cli.main import app

__all__ = ["app"]
