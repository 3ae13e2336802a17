"""Field packing of payloads (fixed-width big-endian and, since 2.0, LEB128 varints) and
pydantic-error translation."""

from __future__ import annotations

from typing import Sequence

from pydantic import ValidationError

from avfc.errors import FormatError, LimitError

#: struct-like width codes used in payload layouts; ``"V"`` (format 2.0) is an unsigned LEB128 varint.
WIDTHS = {"B": 1, "H": 2, "I": 4}
VARINT = "V"
#: a varint field has at most this many bytes (35 bits: every u32 value fits)
MAX_VARINT_BYTES = 5

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
        if code == VARINT:
            values[name], offset = read_varint(model, name, data, offset)
            continue
        width = WIDTHS[code]
        if offset + width > len(data):
            raise FormatError(
                f"{model}.{name}: payload of {len(data)} bytes ends inside this field "
                f"(needs bytes {offset}..{offset + width - 1})"
            )
        values[name] = int.from_bytes(data[offset : offset + width], "big")
        offset += width
    return values, offset


def pack_varint(value: int) -> bytes:
    """Minimal unsigned LEB128: 7 bits per byte, least significant group first."""
    if value < 0:
        raise FormatError(f"varint value {value} is negative")
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if not value:
            out.append(low)
            return bytes(out)
        out.append(low | 0x80)


def read_varint(model: str, name: str, data: bytes, offset: int) -> tuple[int, int]:
    """Read the minimal LEB128 varint of field ``name`` at ``data[offset:]`` (at most MAX_VARINT_BYTES).

    Returns the value and the offset after it. FormatError naming the field when the payload ends
    inside it, when it is longer than MAX_VARINT_BYTES or when it is not minimal (a last byte 00
    after others); a value beyond the field's range is the caller's (the payload model's) to refuse.
    """
    value = 0
    for i in range(MAX_VARINT_BYTES):
        if offset + i >= len(data):
            raise FormatError(f"{model}.{name}: payload of {len(data)} bytes ends inside this varint")
        byte = data[offset + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if i and not byte:
                raise FormatError(f"{model}.{name}: varint is not minimal (a trailing zero group)")
            return value, offset + i + 1
    raise FormatError(f"{model}.{name}: varint longer than {MAX_VARINT_BYTES} bytes")


def read_bytes(model: str, name: str, data: bytes, offset: int, count: int) -> tuple[bytes, int]:
    """Read ``count`` raw bytes for field ``name``; FormatError if the payload is short."""
    if offset + count > len(data):
        raise FormatError(
            f"{model}.{name}: payload of {len(data)} bytes ends inside this field "
            f"(needs {count} bytes from offset {offset})"
        )
    return data[offset : offset + count], offset + count


def pack_fields(values: dict[str, int], layout: Layout) -> bytes:
    """Write the fields of ``layout``: unsigned big-endian integers, or varints for ``"V"``."""
    return b"".join(pack_varint(values[name]) if code == VARINT else values[name].to_bytes(WIDTHS[code], "big")
                    for name, code in layout)


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
