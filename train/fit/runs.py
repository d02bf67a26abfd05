"""Run folders: ``<out>/<YYYYmmdd-HHMMSS>-<name>/`` with config, metrics, log and checkpoints.

Files:

- ``config.json``: the resolved :class:`~.config.TrainConfig`;
- ``metrics.jsonl``: one JSON object per finished epoch;
- ``train.log``: what the run printed, with timestamps;
- ``best.pt`` (lowest validation EMD so far) and ``last.pt`` (end of the last finished epoch, with
  optimizer, scheduler and RNG state for ``--resume``).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nima_rt.train.fit.config import ConfigError, TrainConfig

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
LOG_FILE = "train.log"
BEST = "best.pt"
LAST = "last.pt"


@dataclass
class Run:
    """An open run folder."""

    path: Path
    logger: logging.Logger

    @property
    def best(self) -> Path:
        return self.path / BEST

    @property
    def last(self) -> Path:
        return self.path / LAST

    def log(self, message: str) -> None:
        self.logger.info(message)

    def append_metrics(self, record: dict[str, Any]) -> None:
        with (self.path / METRICS_FILE).open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")

    def read_metrics(self) -> list[dict[str, Any]]:
        return read_metrics(self.path)

    def truncate_metrics(self, epochs: int) -> None:
        """Keep only the records of epochs <= ``epochs`` (after a resume from an earlier last.pt)."""
        records = [r for r in self.read_metrics() if int(r.get("epoch", 0)) <= epochs]
        with (self.path / METRICS_FILE).open("w", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, sort_keys=True) + "\n")

    def close(self) -> None:
        for handler in list(self.logger.handlers):
            handler.close()
            self.logger.removeHandler(handler)


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    with path.open("r", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _logger(run_dir: Path, echo: bool) -> logging.Logger:
    logger = logging.getLogger(f"nima_rt.train.run.{run_dir.resolve()}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    file_handler = logging.FileHandler(run_dir / LOG_FILE, encoding="utf-8")
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    logger.addHandler(file_handler)
    if echo:
        stream = logging.StreamHandler()  # stderr
        stream.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(stream)
    return logger


def create_run(config: TrainConfig, echo: bool = True, now: _dt.datetime | None = None) -> Run:
    """Make a new run folder under ``config.out`` and write ``config.json``."""
    stamp = (now or _dt.datetime.now()).strftime("%Y%m%d-%H%M%S")
    base = Path(config.out) / f"{stamp}-{config.name}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    path.mkdir(parents=True)
    (path / CONFIG_FILE).write_text(json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return Run(path, _logger(path, echo))


def open_run(run: str | Path, echo: bool = True) -> tuple[Run, TrainConfig]:
    """Reopen a run folder (or the folder of a ``last.pt`` path) for ``--resume``."""
    path = Path(run)
    if path.is_file():
        path = path.parent
    config_path = path / CONFIG_FILE
    if not config_path.is_file():
        raise ConfigError(f"{path}: not a run folder (no {CONFIG_FILE})")
    if not (path / LAST).is_file():
        raise ConfigError(f"{path}: nothing to resume ({LAST} not found; the first epoch never finished)")
    try:
        config = TrainConfig.from_dict(json.loads(config_path.read_text(encoding="utf-8")), str(config_path))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{config_path}: not valid JSON ({exc})") from None
    return Run(path, _logger(path, echo)), config
