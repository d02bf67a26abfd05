"""Read an ONNX file's ``metadata_props`` without the onnx package or a full session.

An ONNX file is a protobuf ``ModelProto``; its top-level field 14 holds ``StringStringEntryProto``
(key = field 1, value = field 2). Walking the top-level fields and skipping the graph is enough, so
``nima-rt info`` and model selection stay fast and the runtime needs no ``onnx`` dependency.
"""

from __future__ import annotations

import os
from typing import BinaryIO

from nima_rt.contract.spec import ContractError

_METADATA_PROPS_FIELD = 14
_GRAPH_FIELD = 7
_MAX_FIELD = 25


def _varint(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(data: bytes | memoryview):
    """Yield (field number, wire type, value) of one protobuf message; value is bytes or int."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            yield number, wire, value
        elif wire == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise ValueError("truncated field")
            yield number, wire, data[pos : pos + length]
            pos += length
        elif wire == 1:
            pos += 8
            yield number, wire, None
        elif wire == 5:
            pos += 4
            yield number, wire, None
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if number == 0 or number > 1000:
            raise ValueError(f"implausible field number {number}")


MAX_METADATA_BYTES = 16 << 20  # one metadata_props entry; nima-rt's own JSON is a few KB


def _stream_varint(stream: BinaryIO) -> int | None:
    """A varint read from ``stream``; None at a clean end of file."""
    result = shift = 0
    while True:
        byte = stream.read(1)
        if not byte:
            if shift == 0:
                return None
            raise ValueError("truncated varint")
        result |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            return result
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _top_level_fields(stream: BinaryIO, size: int):
    """Yield (field number, wire type, value) of a ModelProto read from ``stream``: the value of field 14
    (metadata_props) as bytes; every other length-delimited field (the graph, initialisers: almost the
    whole file) is skipped by seeking, so memory stays at one metadata entry whatever the file's size."""
    while True:
        key = _stream_varint(stream)
        if key is None:
            return
        number, wire = key >> 3, key & 7
        if number == 0 or number > 1000:
            raise ValueError(f"implausible field number {number}")
        if wire == 0:
            if _stream_varint(stream) is None:
                raise ValueError("truncated varint")
            yield number, wire, None
        elif wire == 2:
            length = _stream_varint(stream)
            if length is None or stream.tell() + length > size:
                raise ValueError("truncated field")
            if number == _METADATA_PROPS_FIELD:
                if length > MAX_METADATA_BYTES:
                    raise ValueError(f"a metadata entry of {length} bytes (more than {MAX_METADATA_BYTES})")
                yield number, wire, stream.read(length)
            else:
                stream.seek(length, os.SEEK_CUR)
                yield number, wire, None
        elif wire in (1, 5):
            stream.seek(8 if wire == 1 else 4, os.SEEK_CUR)
            yield number, wire, None
        else:
            raise ValueError(f"unsupported wire type {wire}")


def read_metadata_props(stream: BinaryIO, label: str) -> dict[str, str]:
    """Return the metadata_props of the ONNX model open in ``stream`` (seekable; ``label`` names it in
    errors); raise ContractError when it is not an ONNX model. Reads only the metadata entries."""
    props: dict[str, str] = {}
    saw_graph = False
    try:
        size = os.fstat(stream.fileno()).st_size
        for number, wire, value in _top_level_fields(stream, size):
            if number == _GRAPH_FIELD and wire == 2:
                saw_graph = True
            elif number == _METADATA_PROPS_FIELD and wire == 2 and value is not None:
                key = val = ""
                for sub_number, sub_wire, sub_value in _fields(value):
                    if sub_wire == 2 and sub_number == 1:
                        key = bytes(sub_value).decode("utf-8")
                    elif sub_wire == 2 and sub_number == 2:
                        val = bytes(sub_value).decode("utf-8")
                props[key] = val
    except OSError as exc:
        raise ContractError(f"{label}: cannot read model file ({exc.strerror or exc})") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ContractError(f"{label}: not an ONNX model file ({exc})") from None
    if not saw_graph:
        raise ContractError(f"{label}: not an ONNX model file (no graph found)")
    return props
