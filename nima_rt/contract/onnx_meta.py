"""Read an ONNX file's ``metadata_props`` without the onnx package or a full session.

An ONNX file is a protobuf ``ModelProto``; its top-level field 14 holds ``StringStringEntryProto``
(key = field 1, value = field 2). Walking the top-level fields and skipping the graph is enough, so
``nima-rt info`` and model selection stay fast and the runtime needs no ``onnx`` dependency.
"""

from __future__ import annotations

import os

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


def read_metadata_props(path: str | os.PathLike[str]) -> dict[str, str]:
    """Return the model's metadata_props; raise ContractError when the file is not an ONNX model."""
    label = os.fspath(path)
    try:
        with open(path, "rb") as handle:
            data = memoryview(handle.read())
    except OSError as exc:
        raise ContractError(f"{label}: cannot read model file ({exc.strerror or exc})") from None
    props: dict[str, str] = {}
    saw_graph = False
    try:
        for number, wire, value in _fields(data):
            if number == _GRAPH_FIELD and wire == 2:
                saw_graph = True
            elif number == _METADATA_PROPS_FIELD and wire == 2:
                key = val = ""
                for sub_number, sub_wire, sub_value in _fields(value):
                    if sub_wire == 2 and sub_number == 1:
                        key = bytes(sub_value).decode("utf-8")
                    elif sub_wire == 2 and sub_number == 2:
                        val = bytes(sub_value).decode("utf-8")
                props[key] = val
    except (ValueError, UnicodeDecodeError) as exc:
        raise ContractError(f"{label}: not an ONNX model file ({exc})") from None
    if not saw_graph:
        raise ContractError(f"{label}: not an ONNX model file (no graph found)")
    return props
