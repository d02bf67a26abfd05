"""Read an ONNX file's ``metadata_props`` and precision without the onnx package or a full session.

An ONNX file is a protobuf ``ModelProto``; its top-level field 14 holds ``StringStringEntryProto``
(key = field 1, value = field 2). Walking the top-level fields, and in the graph only the nodes' types and
the initialisers' element types while seeking past their data, is enough, so ``nima-rt info`` and model
selection stay fast, memory stays small, and the runtime needs no ``onnx`` dependency.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from nima_rt.contract.spec import ContractError

_METADATA_PROPS_FIELD = 14
_GRAPH_FIELD = 7
_MAX_FIELD = 25
_NODE_FIELD = 1  # GraphProto.node
_INITIALIZER_FIELD = 5  # GraphProto.initializer
_OP_TYPE_FIELD = 4  # NodeProto.op_type
_DATA_TYPE_FIELD = 2  # TensorProto.data_type
_FLOAT16 = 10  # TensorProto.FLOAT16
_QDQ = (b"QuantizeLinear", b"DequantizeLinear")


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


def _stream_fields(stream: BinaryIO, end: int) -> Iterator[tuple[int, int, int]]:
    """Yield (field number, wire type, value) of the protobuf message in ``stream`` up to offset ``end``:
    the varint for wire type 0, the length for wire type 2 (the stream is at the value's first byte; after
    the consumer's turn it is moved past the value, read or not), 0 for fixed-size values (skipped). Large
    values (the graph's tensors) are skipped by seeking, so memory stays small whatever the file's size."""
    while stream.tell() < end:
        key = _stream_varint(stream)
        if key is None:
            return
        number, wire = key >> 3, key & 7
        if number == 0 or number > 1000:
            raise ValueError(f"implausible field number {number}")
        if wire == 0:
            value = _stream_varint(stream)
            if value is None:
                raise ValueError("truncated varint")
            yield number, wire, value
        elif wire == 2:
            length = _stream_varint(stream)
            start = stream.tell()
            if length is None or start + length > end:
                raise ValueError("truncated field")
            yield number, wire, length
            stream.seek(start + length)
        elif wire in (1, 5):
            stream.seek(8 if wire == 1 else 4, os.SEEK_CUR)
            yield number, wire, 0
        else:
            raise ValueError(f"unsupported wire type {wire}")


def _read(stream: BinaryIO, length: int, limit: int, what: str) -> bytes:
    if length > limit:
        raise ValueError(f"{what} of {length} bytes (more than {limit})")
    return stream.read(length)


def _graph_precision(stream: BinaryIO, end: int) -> str:
    """What the graph computes in, as export makes its variants: ``int8`` with Quantize/DequantizeLinear
    nodes (static QDQ), ``fp16`` with float16 initialisers, else ``fp32``."""
    found = "fp32"
    for number, wire, length in _stream_fields(stream, end):
        if wire != 2:
            continue
        if number == _NODE_FIELD:
            node_end = stream.tell() + length
            for sub, sub_wire, sub_length in _stream_fields(stream, node_end):
                if sub == _OP_TYPE_FIELD and sub_wire == 2 and _read(stream, sub_length, 256, "an op type") in _QDQ:
                    return "int8"
        elif number == _INITIALIZER_FIELD:
            tensor_end = stream.tell() + length
            for sub, sub_wire, value in _stream_fields(stream, tensor_end):
                if sub == _DATA_TYPE_FIELD and sub_wire == 0:
                    found = "fp16" if value == _FLOAT16 else found
                    break
    return found


@dataclass(frozen=True)
class OnnxHeader:
    """What nima-rt reads of an ONNX file without loading it: its metadata_props and its precision."""

    props: dict[str, str]
    precision: str  # "fp32" | "fp16" | "int8" (see _graph_precision)


def read_onnx_header(stream: BinaryIO, label: str) -> OnnxHeader:
    """The metadata_props and precision of the ONNX model open in ``stream`` (seekable; ``label`` names it
    in errors); raise ContractError when it is not an ONNX model. Reads the metadata entries and the
    graph's node types and tensor types, seeking past the tensors' data."""
    props: dict[str, str] = {}
    precision = None
    try:
        size = os.fstat(stream.fileno()).st_size
        for number, wire, length in _stream_fields(stream, size):
            if number == _GRAPH_FIELD and wire == 2:
                precision = _graph_precision(stream, stream.tell() + length)
            elif number == _METADATA_PROPS_FIELD and wire == 2:
                key = val = ""
                for sub_number, sub_wire, sub_value in _fields(_read(stream, length, MAX_METADATA_BYTES,
                                                                    "a metadata entry")):
                    if sub_wire == 2 and sub_number == 1:
                        key = bytes(sub_value).decode("utf-8")
                    elif sub_wire == 2 and sub_number == 2:
                        val = bytes(sub_value).decode("utf-8")
                props[key] = val
    except OSError as exc:
        raise ContractError(f"{label}: cannot read model file ({exc.strerror or exc})") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ContractError(f"{label}: not an ONNX model file ({exc})") from None
    if precision is None:
        raise ContractError(f"{label}: not an ONNX model file (no graph found)")
    return OnnxHeader(props, precision)
