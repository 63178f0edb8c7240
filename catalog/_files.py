"""Reading data files with errors that name the file and line (shared by the loaders)."""

from __future__ import annotations

from pathlib import Path

from recagent.catalog.errors import DataError


def read_text(path: Path, encodings: tuple[str, ...] = ("utf-8-sig",)) -> str:
    """The file's text, decoded with the first of ``encodings`` that works.

    Raises DataError for a missing or unreadable file, undecodable bytes (with the line of
    the first bad byte) and a file with nothing but whitespace.
    """
    if not path.is_file():
        raise DataError("missing file", path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read file ({exc.strerror})", path) from None
    first_error: UnicodeDecodeError | None = None
    for encoding in encodings:
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError as exc:
            first_error = first_error or exc
    else:
        assert first_error is not None
        line = data.count(b"\n", 0, first_error.start) + 1
        names = " or ".join("UTF-8" if e.startswith("utf-8") else e for e in encodings)
        raise DataError(
            f"bad encoding: not {names} text (byte 0x{data[first_error.start]:02x})", path, line
        )
    if not text.strip():
        raise DataError("empty file", path)
    return text


def read_lines(path: Path, encodings: tuple[str, ...] = ("utf-8-sig",)) -> list[str]:
    """The file's lines without line ends (``\\n`` or ``\\r\\n``); no phantom last line.

    Splits on ``\\n`` only, not ``str.splitlines``: Latin-1 ``\\x85`` must not end a line.
    """
    lines = read_text(path, encodings).split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]
