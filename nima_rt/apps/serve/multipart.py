"""The ``file`` parts of a ``multipart/form-data`` body, parsed in memory by python-multipart.

The body is already bounded (``--max-body-mb``), so parts are kept as bytes: no temporary files, no
thread hops. Other fields are ignored; the number of files is bounded (``--max-files``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

FILE_FIELD = "file"


class MultipartError(Exception):
    """A form that cannot be read (400) or holds too many files (413); ``str()`` is one line."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Part:
    """One form part: its field name, file name (None for a plain field) and content."""

    name: str = ""
    filename: str | None = None
    data: bytearray = field(default_factory=bytearray)


@dataclass
class _Collector:
    max_files: int
    parts: list[Part] = field(default_factory=list)
    header_name: bytes = b""
    header_value: bytes = b""
    disposition: bytes = b""
    current: Part = field(default_factory=Part)

    def callbacks(self) -> dict[str, object]:
        return {"on_part_begin": self.part_begin, "on_part_data": self.part_data, "on_part_end": self.part_end,
                "on_header_field": self.header_field, "on_header_value": self.header_value_data,
                "on_header_end": self.header_end, "on_headers_finished": self.headers_finished}

    def part_begin(self) -> None:
        self.current, self.disposition = Part(), b""

    def part_data(self, data: bytes, start: int, end: int) -> None:
        if self.current.name == FILE_FIELD:  # other fields are not kept
            self.current.data += data[start:end]

    def part_end(self) -> None:
        if self.current.name == FILE_FIELD:
            self.parts.append(self.current)

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_name += data[start:end]

    def header_value_data(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def header_end(self) -> None:
        if self.header_name.lower() == b"content-disposition":
            self.disposition = self.header_value
        self.header_name = self.header_value = b""

    def headers_finished(self) -> None:
        _, params = parse_options_header(self.disposition)
        if b"name" not in params:
            raise MultipartError("a multipart part has no name (Content-Disposition: form-data; name=\"file\")")
        self.current.name = params[b"name"].decode("utf-8", "replace")
        if b"filename" in params:
            self.current.filename = params[b"filename"].decode("utf-8", "replace")
        if self.current.name == FILE_FIELD and len(self.parts) >= self.max_files:
            raise MultipartError(f"more than {self.max_files} files in one request (--max-files)", 413)


def file_parts(content_type: str, body: bytes | bytearray, max_files: int) -> list[Part]:
    """The ``file`` parts of ``body`` in order; :class:`MultipartError` for a form that cannot be read."""
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise MultipartError("multipart/form-data without a boundary in its Content-Type")
    collector = _Collector(max_files)
    try:
        parser = MultipartParser(boundary, collector.callbacks())  # type: ignore[arg-type]
        parser.write(bytes(body))
        parser.finalize()
    except FormParserError as exc:
        raise MultipartError(f"malformed multipart/form-data body ({exc})") from None
    return collector.parts
