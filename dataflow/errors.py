"""User-facing errors.

Every error a user can cause (a malformed file, an impossible shape, an unsupported format, an
infeasible mapping) is an :class:`EinsynthError` whose message is one line naming the file, the
field and the offending value. The command line prints that line and exits non-zero.
"""


class EinsynthError(Exception):
    """A user-facing error: one line naming the file, field and value."""


class CascadeError(EinsynthError):
    """A cascade (Extended-Einsum workload) is malformed."""


class FormatError(EinsynthError):
    """A number format is unknown or a value cannot be represented."""


class SpecError(EinsynthError):
    """An architecture or hardware-block specification is invalid."""


class MappingError(EinsynthError):
    """A mapping is invalid for its cascade and architecture."""


class InfeasibleError(EinsynthError):
    """No mapping satisfies the constraints; the message names the conflicting constraint."""


def where(path, line=None, field=None):
    """Format a location prefix ``file:line: field``, leaving out what is unknown."""
    parts = []
    if path is not None:
        parts.append(f"{path}:{line}" if line is not None else str(path))
    if field is not None:
        parts.append(str(field))
    return ": ".join(parts)
