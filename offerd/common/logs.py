"""Log setup for the command-line entry points (never done on import)."""

from __future__ import annotations

import logging
import sys
import threading
import traceback

from offerd.common.redact import redact_url

_FORMAT = "%(levelname).1s%(asctime)s.%(msecs)03d %(process)d %(name)s] %(message)s"


class RedactingFilter(logging.Filter):
    """Masks URL passwords (``zk://user:pass@...``) in every record a handler writes.

    On the handler rather than on a logger, so it also covers records from
    libraries (kazoo, cheroot, ...) that propagate to the root logger. The
    record's text is rendered here, once, and replaced by its redacted form;
    a traceback is rendered and redacted too, since exception messages often
    quote the URL they failed on.
    """

    _exception_formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            # A malformed format string: let the handler report it as logging does.
            return True
        redacted = redact_url(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._exception_formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_url(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_url(record.stack_info)
        return True


def _print_redacted(kind, value, tb, heading: str = "") -> None:
    text = heading + "".join(traceback.format_exception(kind, value, tb))
    sys.stderr.write(redact_url(text))
    sys.stderr.flush()


def _thread_excepthook(args) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    _print_redacted(args.exc_type, args.exc_value, args.exc_traceback, f"Exception in thread {name}:\n")


def setup_logging(level: str = "INFO", stream=None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter(_FORMAT, datefmt="%m%d %H:%M:%S"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, str(level).upper(), logging.INFO))
    # A crash's traceback bypasses logging but lands in the same log file; it often
    # quotes the URL it failed on.
    sys.excepthook = _print_redacted
    threading.excepthook = _thread_excepthook


class LoggingLevel:
    """Mesos' glog verbosity, mapped onto Python logging for the whole process:
    0 is the level logging was started with, 1 and above is DEBUG. A level set
    for a duration falls back to that level when it ends, as in Mesos."""

    def __init__(self):
        self._lock = threading.Lock()
        self.level = 0
        self._original: int | None = None
        self._timer: threading.Timer | None = None

    def set(self, level: int, seconds: float) -> None:
        root = logging.getLogger()
        with self._lock:
            if self._original is None:
                self._original = root.level
            if self._timer is not None:
                self._timer.cancel()
            self.level = level
            root.setLevel(logging.DEBUG if level > 0 else self._original)
            self._timer = threading.Timer(max(0.0, seconds), self._revert)
            self._timer.daemon = True
            self._timer.start()

    def _revert(self) -> None:
        with self._lock:
            self.level = 0
            if self._original is not None:
                logging.getLogger().setLevel(self._original)
            self._timer = None
