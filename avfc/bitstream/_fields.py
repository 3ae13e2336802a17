"""Fixed-width big-endian field packing and pydantic-error translation for payloads."""

from __future__ import annotations

from typing import Sequence

from pydantic import ValidationError

from avfc.errors import FormatError, LimitError

#: struct-like width codes used in payload layouts.
WIDTHS = {"B": 1, "H": 2, "I": 4}

Layout = Sequence[tuple[str, str]]

# pydantic error types that mean "a value or size is above the accepted bound".
_UPPER_BOUND_ERRORS = frozenset({"less_than_equal", "less_than", "too_long", "string_too_long", "bytes_too_long"})


def unpack_fields(model: str, data: bytes, offset: int, layout: Layout) -> tuple[dict[str, int], int]:
    """Read the unsigned big-endian fields of ``layout`` from ``data[offset:]``.

    Returns the values by name and the offset after the last field. Raises
    FormatError naming the first field the payload is too short for.
    """
    values: dict[str, int] = {}
    for name, code in layout:
        width = WIDTHS[code]
        if offset + width > len(data):
            raise FormatError(
                f"{model}.{name}: payload of {len(data)} bytes ends inside this field "
                f"(needs bytes {offset}..{offset + width - 1})"
            )
        values[name] = int.from_bytes(data[offset : offset + width], "big")
        offset += width
    return values, offset


def read_bytes(model: str, name: str, data: bytes, offset: int, count: int) -> tuple[bytes, int]:
    """Read ``count`` raw bytes for field ``name``; FormatError if the payload is short."""
    if offset + count > len(data):
        raise FormatError(
            f"{model}.{name}: payload of {len(data)} bytes ends inside this field "
            f"(needs {count} bytes from offset {offset})"
        )
    return data[offset : offset + count], offset + count


def pack_fields(values: dict[str, int], layout: Layout) -> bytes:
    """Write the fields of ``layout`` as unsigned big-endian integers."""
    return b"".join(values[name].to_bytes(WIDTHS[code], "big") for name, code in layout)


def translate(model: str, exc: ValidationError) -> FormatError:
    """Turn a pydantic ValidationError into LimitError (a bound exceeded) or FormatError.

    The message names the model and field of the first error and its input value.
    """
    errors = exc.errors(include_url=False)
    first = errors[0]
    field = ".".join(str(part) for part in first["loc"]) or "<model>"
    shown = repr(first.get("input"))
    if len(shown) > 48:
        shown = shown[:45] + "..."
    message = f"{model}.{field}: {first['msg']} (got {shown})"
    if len(errors) > 1:
        message += f" [and {len(errors) - 1} more error(s)]"
    if first["type"] in _UPPER_BOUND_ERRORS:
        return LimitError(message)
    return FormatError(message)
