"""The whole exception tree of selective_imager.

Every error the library raises on purpose derives from :class:`SelectiveImagerError`,
so a caller can catch one class. Backend errors (pytsk3, pyfsntfs, pybde and pyewf
raise ``OSError``/``IOError``) are translated at the layer boundary with ``from exc``
so the cause stays visible.

::

    SelectiveImagerError
    ├─ SourceError                 the image or device cannot be opened or read
    │  └─ SourceReadError          a byte range cannot be read (also an OSError)
    │     └─ SourceTruncatedError  the range lies past the end of a truncated image
    ├─ VolumeSystemError           the partition table is damaged or inconsistent
    ├─ EncryptionError
    │  ├─ UnsupportedEncryptionError
    │  └─ CredentialsError         locked: no, or a wrong, credential
    ├─ FilesystemError
    │  ├─ UnsupportedFilesystemError
    │  └─ PathNotFoundError        also a FileNotFoundError
    ├─ RuleError                   a rule file is invalid (file, line, message, hint)
    ├─ BackendMissingError         a format's library (binding) is not installed
    └─ ContainerError              the output container cannot be written or read

Severity follows the layer: a per-file error becomes an item outcome, a per-volume
error is recorded and the volume skipped, rule and container errors abort the run.
Messages never contain a secret.
"""

from __future__ import annotations


class SelectiveImagerError(Exception):
    """Base class of every error raised by selective_imager."""


class SourceError(SelectiveImagerError):
    """The source (image file, split image, E01, device) cannot be opened or read."""


class SourceReadError(SourceError, OSError):
    """A byte range of the source cannot be read (a damaged E01 chunk, a bad sector).

    Also an :class:`OSError`, so the readers that zero-fill and record unreadable
    ranges (the disk hash, the collector) treat it as they treat a failed read.

    Attributes:
        offset: first byte that cannot be read.
        length: how many bytes from ``offset`` cannot be read.
    """

    def __init__(self, message: str, offset: int, length: int) -> None:
        super().__init__(message)
        self.offset = offset
        self.length = length

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class SourceTruncatedError(SourceReadError):
    """A read reaches past the end of the source (a truncated image)."""


class VolumeSystemError(SelectiveImagerError):
    """A partition table is present but damaged, overlapping or out of range."""


class EncryptionError(SelectiveImagerError):
    """An encrypted volume cannot be opened."""


class UnsupportedEncryptionError(EncryptionError):
    """The encryption method or metadata version is not supported."""


class CredentialsError(EncryptionError):
    """No credential, or no correct credential, was given for an encrypted volume."""


class FilesystemError(SelectiveImagerError):
    """A file system cannot be opened or a file in it cannot be read."""


class UnsupportedFilesystemError(FilesystemError):
    """No supported file system was recognised on a volume."""


class PathNotFoundError(FilesystemError, FileNotFoundError):
    """A path does not exist in a file system."""


class RuleError(SelectiveImagerError):
    """A rule file is invalid.

    Attributes:
        file: the rule file (or ``"<string>"``).
        line: 1-based line number, or None when unknown.
        message: what is wrong.
        hint: how to fix it, or an empty string.
    """

    def __init__(self, file: str, line: int | None, message: str, hint: str = "") -> None:
        self.file = file
        self.line = line
        self.message = message
        self.hint = hint
        where = f"{file}:{line}" if line is not None else file
        text = f"{where}: {message}"
        if hint:
            text += f" (hint: {hint})"
        super().__init__(text)


class BackendMissingError(SelectiveImagerError):
    """A registered format's module cannot be imported: its library is missing."""


class TransferError(SelectiveImagerError):
    """An upload failed: host key refused, authentication, connection, or hash mismatch."""


class ContainerError(SelectiveImagerError):
    """The evidence container cannot be written, or read back."""


__all__ = [
    "BackendMissingError",
    "ContainerError",
    "CredentialsError",
    "EncryptionError",
    "FilesystemError",
    "PathNotFoundError",
    "RuleError",
    "SelectiveImagerError",
    "SourceError",
    "SourceReadError",
    "TransferError",
    "UnsupportedEncryptionError",
    "UnsupportedFilesystemError",
    "VolumeSystemError",
]


def short_error(exc: BaseException) -> str:
    """One line from a backend error.

    libyal errors chain every layer's message (``f: outer. g: inner.``); the outermost
    says what failed and the innermost why, so both are kept and the rest dropped.
    """
    text = " ".join(str(exc).split())
    if not text:
        return type(exc).__name__
    clauses = [c.strip() for c in text.split(". ") if c.strip()]
    if len(clauses) <= 2:
        return text.rstrip(".")

    def bare(clause: str) -> str:
        head, sep, tail = clause.partition(": ")
        return tail if sep and " " not in head else clause

    return f"{bare(clauses[0]).rstrip('.')} ({clauses[-1].rstrip('.')})"
