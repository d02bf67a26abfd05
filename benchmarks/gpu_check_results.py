"""The results of ``gpu_check.py``: rows with their reasons, the time budget, the printed table and files."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Row:
    """One line of the results: a figure, or a skip/failure with its reason."""

    step: str
    item: str
    status: str  # ok | skipped | failed
    result: str  # short, for the table
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Check:
    args: argparse.Namespace
    out: Path
    deadline: float
    rows: list[Row] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    gpu_reason: str | None = None
    torch_cuda_reason: str | None = None
    started: float = field(default_factory=time.monotonic)

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def add(self, step: str, item: str, status: str, result: str, **data: Any) -> Row:
        row = Row(step, item, status, result, {"at_s": round(time.monotonic() - self.started, 1), **data})
        self.rows.append(row)
        print(f"[{row.data['at_s']:6.1f} s] [{step}] {item}: {status} {result}", file=sys.stderr, flush=True)
        return row

    def skip(self, step: str, item: str, reason: str) -> None:
        self.add(step, item, "skipped", reason)

    def fits(self, step: str, item: str, seconds: float) -> bool:
        if self.left() < seconds:
            self.skip(step, item, f"time budget: {self.left():.0f} s left, needs ~{seconds:.0f} s")
            return False
        return True


def one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:300]


def table(rows: list[Row]) -> str:
    """The short table printed last: one line per row, results and reasons in full."""
    width = max(len(row.item) for row in rows)
    lines = [f"{'step':<11} {'item':<{width}}  result", "-" * (width + 40)]
    for row in rows:
        result = row.result if row.status == "ok" else f"{row.status.upper()}: {row.result}"
        lines.append(f"{row.step:<11} {row.item:<{width}}  {result}")
    return "\n".join(lines)


def write_results(check: Check) -> None:
    check.data["rows"] = [row.__dict__ for row in check.rows]
    (check.out / "results.json").write_text(json.dumps(check.data, indent=2, default=str), encoding="utf-8")
    env = check.data.get("environment", {})
    header = f"# GPU check {env.get('date_utc', '')}\n\nMachine: {json.dumps(env, default=str)}\n\n"
    body = "| step | item | status | result |\n|---|---|---|---|\n" + "\n".join(
        f"| {r.step} | {r.item} | {r.status} | {r.result} |" for r in check.rows)
    (check.out / "summary.md").write_text(header + body + "\n", encoding="utf-8")
