import signal
import sys


def _before_anything(signum: int, frame: object) -> None:
    # A signal while Python is still importing: nothing has started, leave quietly.
    sys.exit(128 + signum)


for _sig in (signal.SIGINT, signal.SIGTERM):
    signal.signal(_sig, _before_anything)

from harness.cli import main  # noqa: E402 - after the handlers, which must come first

sys.exit(main())
