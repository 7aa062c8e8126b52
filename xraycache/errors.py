"""The package's own exceptions: each carries a one-line message a user can act on."""

from __future__ import annotations


class XrayCacheError(Exception):
    """Base class: every error the package raises on purpose is one of these."""

    exit_code = 2


class InputError(XrayCacheError):
    """The source folder, the output path or an argument is not usable (CLI exit code 2)."""


class NotACacheError(XrayCacheError):
    """A file that is not an xraycache HDF5 file, or a damaged one."""


class StrictError(XrayCacheError):
    """``strict=True`` and some files could not be taken (CLI exit code 1)."""

    exit_code = 1


class DecodeError(XrayCacheError):
    """One file could not be turned into an image; the message is the reason recorded for it."""
