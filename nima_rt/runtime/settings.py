"""The error of a run setting that cannot be used, shared by the score run and the rank step."""

from __future__ import annotations


class SettingError(ValueError):
    """A run setting that cannot be used (alone or with another); ``option`` is the CLI option it came from."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(message)
        self.option = option


__all__ = ["SettingError"]
