"""Long text from files or stdin (a 1 MB goal cannot pass through argv), checked as UTF-8."""

from __future__ import annotations

import sys
from pathlib import Path

import click

FILE_HELP = "PATH, or - for stdin; UTF-8"


def text_option(value: str | None, path: str | None, names: tuple[str, str]) -> str | None:
    """The text given inline or in a file (not both), checked; None if neither."""
    inline, file_option = names
    if value is not None and path is not None:
        raise click.UsageError(f"give {inline} or {file_option}, not both")
    if path is not None:
        return read_text(path, file_option)
    if value is not None:
        return checked(value, inline)
    return None


def read_text(path: str, option: str) -> str:
    """The file's text (stdin for ``-``); bytes that are not UTF-8 are refused."""
    try:
        data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as e:
        raise click.ClickException(f"{option}: cannot read {path}: {e.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise click.ClickException(f"{option}: {path} is not UTF-8 (byte {e.start})") from None


def checked(text: str, option: str) -> str:
    """Text from argv, refused if it was not UTF-8 (its bad bytes became surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise click.ClickException(f"{option}: not UTF-8 (character {e.start})") from None
    return text
