"""Reason codes: why a record was rejected (severity error) or loaded with a flag (severity warning)."""

from enum import StrEnum


class Reason(StrEnum):
    NULL_KEY = "null_key"
    INVALID_KEY = "invalid_key"
    DUPLICATE_KEY = "duplicate_key"
    NULL_GEOMETRY = "null_geometry"
    EMPTY_GEOMETRY = "empty_geometry"
    UNPARSEABLE_GEOMETRY = "unparseable_geometry"
    UNKNOWN_SRID = "unknown_srid"
    NON_POLYGONAL = "non_polygonal"
    INVALID_GEOMETRY_REPAIRED = "invalid_geometry_repaired"
    INVALID_GEOMETRY_REJECTED = "invalid_geometry_rejected"
    BAD_ATTRIBUTE = "bad_attribute"

    @property
    def severity(self) -> str:
        return "warning" if self is Reason.INVALID_GEOMETRY_REPAIRED else "error"


def excerpt(value: object, limit: int = 80) -> str | None:
    """A short, printable excerpt of an offending value for the errors table."""
    if value is None:
        return None
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        text = raw[:32].hex() + ("..." if len(raw) > 32 else "")
        return f"{len(raw)} bytes: {text}"
    text = str(value).replace("\x00", "\\x00")  # a NUL shown as such, not ending the text in other tools
    return text if len(text) <= limit else text[: limit - 3] + "..."
