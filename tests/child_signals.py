"""Children that tests interrupt start with SIGINT's default action.

A suite started from a background job of a non-interactive shell inherits SIGINT as ignored, and
an exec'd child keeps an ignored disposition: Python then installs no KeyboardInterrupt handler
and our tools rightly honour it, so a test's SIGINT would do nothing. Pass `preexec_fn=` this to
every Popen whose child a test interrupts.
"""
import signal


def default_sigint() -> None:
    """Runs in the child between fork and exec: SIGINT back to its default action."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
