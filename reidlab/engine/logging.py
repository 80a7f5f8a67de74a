"""Run logging: one JSON line per logged step, epoch or evaluation in the run's log (``RunDir.log_path``), and
TensorBoard scalars when the tensorboard package is installed and asked for."""

from __future__ import annotations

import json
import math
import os
from typing import Any

import numpy as np

from reidlab.utils import atomic_write, disk_full_cause, disk_full_error

from .runs import RunDir


def _plain(value: Any) -> Any:
    """JSON-safe scalars (numpy/torch numbers, NaN -> None)."""
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class MetricsLogger:
    """Appends records to the run's log (flushed per line, so a killed run keeps what it logged)."""

    def __init__(self, output_dir: str | os.PathLike, tensorboard: bool = False, enabled: bool = True):
        self.enabled = enabled
        self.path = RunDir(output_dir).log_path
        self._file = None
        self._writer = None
        self.tensorboard_missing = False
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a")
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                self.tensorboard_missing = True
            else:
                self._writer = SummaryWriter(log_dir=str(RunDir(output_dir).tensorboard_dir))

    def log(self, kind: str, step: int, **values: Any) -> None:
        """One line `{"type": kind, "step": global_iteration, ...values}`; numbers also go to TensorBoard."""
        if not self.enabled:
            return
        record = {"type": kind, "step": step, **{k: _plain(v) for k, v in values.items()}}
        line = json.dumps(record) + "\n"
        try:
            self._file.write(line)
            self._file.flush()
        except OSError as error:  # a full disk is one line, as for every other write (a cut line is skipped on read)
            if full := disk_full_cause(error):
                raise disk_full_error(self.path, line.encode(), full) from error
            raise
        if self._writer is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "step":
                    self._writer.add_scalar(f"{kind}/{key}", value, step)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def read_metrics(output_dir: str | os.PathLike, kind: str | None = None) -> list[dict]:
    """Records of a run's log (``RunDir.log_path``), optionally only those of one type ("step", "epoch", "eval")."""
    path = RunDir(output_dir).log_path
    if not path.is_file():
        raise FileNotFoundError(f"no metrics log at {str(path)!r}; was a run trained into {str(output_dir)!r}?")
    records = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a kill
            if kind is None or record.get("type") == kind:
                records.append(record)
    return records


def truncate_metrics(output_dir: str | os.PathLike, last_step: int) -> None:
    """Drop the records logged after global step `last_step`, the checkpoint's (a resumed run logs them again)."""
    path = RunDir(output_dir).log_path
    if not path.is_file():
        return
    kept = [json.dumps(r) + "\n" for r in read_metrics(output_dir) if r.get("step", 0) <= last_step]
    atomic_write(path, "".join(kept))
