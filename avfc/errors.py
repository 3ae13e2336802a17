"""The one exception family of avfc.

Every error that avfc raises on bad input (a malformed file, bad media, a wrong
configuration, a model mismatch) is an :class:`AvfcError`. Callers that embed
avfc catch ``AvfcError`` and nothing else.
"""

from __future__ import annotations


class AvfcError(Exception):
    """Base class of every error avfc raises on bad input or bad use."""


class FormatError(AvfcError):
    """The bytes are not a well-formed .avfc stream (bad magic, bad field, bad layout)."""


class UnsupportedVersionError(FormatError):
    """The stream's major version is newer than this decoder understands."""


class TruncatedError(FormatError):
    """The stream ends inside a unit or before its sequence header."""


class CorruptUnitError(FormatError):
    """A unit's CRC-32 does not match its payload."""


class LimitError(FormatError):
    """A size or count in the stream exceeds the bounds this decoder accepts."""


class EntropyError(AvfcError):
    """Entropy coding or decoding failed (bad symbols, inconsistent packet)."""


class ModelMismatchError(AvfcError):
    """The stream names a model, or weights hash, that this installation does not have."""


class MediaError(AvfcError):
    """Input media cannot be read, has no video, or cannot be written."""


class ConfigError(AvfcError):
    """A configuration value is out of range or inconsistent."""


class FileAccessError(AvfcError):
    """A file cannot be read or written as asked: it is missing or a directory, its folder does not
    exist, permission is refused, or it exists and overwriting it was not asked for."""


__all__ = [
    "AvfcError",
    "FormatError",
    "UnsupportedVersionError",
    "TruncatedError",
    "CorruptUnitError",
    "LimitError",
    "EntropyError",
    "ModelMismatchError",
    "MediaError",
    "ConfigError",
    "FileAccessError",
]
