"""capsjax's errors: one base class, and what the command line does with each.

Every error that capsjax raises on purpose derives from :class:`CapsjaxError`. Its message is one line
that names the file, field or path and says what to do; ``capsjax`` prints it alone and exits with
the class's ``exit_code``:

==========  =============================================================================
exit code   meaning
==========  =============================================================================
0           done
1           a failure while running: storage, a download, another process of a run
2           bad input: a config, a flag, a data or weights file, a work directory
3           training diverged (a non-finite loss or gradient)
130         interrupted (Ctrl-C, SIGTERM); a run checkpoints first and continues with --resume
==========  =============================================================================

Subclasses also derive from the built-in exception a caller would catch (``ValueError`` for bad
input, ``OSError`` for storage, ``RuntimeError`` for a failed run), so ``except ValueError`` keeps
working. This module imports nothing from capsjax: every layer may raise these.
"""

from __future__ import annotations

EXIT_RUNTIME = 1
EXIT_INPUT = 2
EXIT_DIVERGED = 3
EXIT_INTERRUPTED = 130


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (its type's name when the message is empty): what a
    one-line error quotes of an error raised beneath it."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


class CapsjaxError(Exception):
    """The base of every error capsjax raises on purpose; its message is one line."""

    exit_code = EXIT_RUNTIME


class InputError(CapsjaxError, ValueError):
    """Bad input: a config, a command-line argument, a data or weights file, a work directory."""

    exit_code = EXIT_INPUT


class ConfigError(InputError):
    """A config field holds a value that is not allowed; the message names the field, the value and the rule."""


class UsageError(InputError):
    """Command-line arguments that do not go together, or a required one missing."""


class DataError(InputError):
    """Data that cannot be used: missing, malformed, or larger than the limits allow."""


class DataNotFoundError(DataError, FileNotFoundError):
    """A dataset, data folder or data file that is not where it was asked for."""


class WeightsError(InputError):
    """A weights file that cannot be used: not one, damaged, or not fitting the model."""


class WorkdirError(InputError):
    """A work directory that cannot be used: a file, unwritable, held by another run, or holding other files."""


class StorageError(CapsjaxError, OSError):
    """A file that could not be written or read back (full disk, no permission, a damaged checkpoint)."""

    def __str__(self) -> str:  # OSError(code, text, path) would print "[Errno 28] ..."
        if self.filename is not None and self.strerror:
            return f"{self.filename}: {self.strerror}"
        return super().__str__()


class DownloadError(CapsjaxError, OSError):
    """A download that failed: no answer, too slow, too large, or not the expected file."""


class NonFiniteError(CapsjaxError, RuntimeError):
    """A training step's loss or gradients were not finite (``on_nonfinite="stop"``)."""

    exit_code = EXIT_DIVERGED


class DistributedError(CapsjaxError, RuntimeError):
    """Another process of a distributed run failed or cannot be reached."""


__all__ = [
    "EXIT_DIVERGED",
    "EXIT_INPUT",
    "EXIT_INTERRUPTED",
    "EXIT_RUNTIME",
    "CapsjaxError",
    "ConfigError",
    "DataError",
    "DataNotFoundError",
    "DistributedError",
    "DownloadError",
    "InputError",
    "NonFiniteError",
    "StorageError",
    "UsageError",
    "WeightsError",
    "WorkdirError",
    "first_line",
]
