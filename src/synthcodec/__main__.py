"""`python -m synthcodec` and the `synthcodec` command: the CLI (synthcodec.cli), started so
that a Ctrl-C or SIGTERM while it is still importing ends it as quietly as one later (one
line, exit 130, no traceback)."""

import signal
import sys
import threading


def _abort_quietly(signum: int, frame: object) -> None:
    sys.stderr.write("aborted\n")
    raise SystemExit(130)


def run() -> None:
    sigint = None
    if (threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
        sigint = signal.signal(signal.SIGINT, _abort_quietly)
        signal.signal(signal.SIGTERM, _abort_quietly)  # cli.main puts its own in place
    from synthcodec.cli import main

    main(sigint=sigint)


if __name__ == "__main__":
    run()
