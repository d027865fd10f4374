"""Checkpoints, and finding where to resume.

Layout under ``train.checkpoint_dir`` (git-ignored ``checkpoints/`` by default), one folder per
registered model name (``cookie_<config>``, ``cookie_<config>_raw``, ...), so that the models trained
on one config with ``--set model.method=...`` never resume each other's runs::

    <checkpoint_dir>/<model name>/LATEST              run id of the newest run
    <checkpoint_dir>/<model name>/<run id>/run.json    what the run trains (model section, processes)
    <checkpoint_dir>/<model name>/<run id>/stats.json  its preprocessing statistics (reused on resume)
    <checkpoint_dir>/<model name>/<run id>/epoch_000012.pt

Written every ``train.checkpoint_every`` epochs, at the last epoch and where a run stops.

A checkpoint holds the model and optimiser states, every rank's generator and global RNG states,
the stage and epoch to continue from and the history so far, so a resumed run is bit-identical
to an uninterrupted one on CPU. Files are written to a temporary name and renamed: a crash while
saving never leaves a truncated checkpoint as the newest one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

FORMAT = "cookie.checkpoint"
FORMAT_VERSION = 1
LATEST = "LATEST"
_EPOCH_FILE = re.compile(r"^epoch_(\d{6})\.pt$")


def config_dir(base: str | os.PathLike[str], model_key: str) -> Path:
    return Path(base) / model_key


def run_dir(base: str | os.PathLike[str], model_key: str, run_id: str) -> Path:
    return config_dir(base, model_key) / run_id


def mark_latest(base: str | os.PathLike[str], model_key: str, run_id: str) -> None:
    d = config_dir(base, model_key)
    d.mkdir(parents=True, exist_ok=True)
    _atomic_write_text(d / LATEST, run_id + "\n")


def latest_run_id(base: str | os.PathLike[str], model_key: str) -> str | None:
    p = config_dir(base, model_key) / LATEST
    return p.read_text().strip() or None if p.is_file() else None


def fingerprint(*parts: Any) -> str:
    """Stable hash of JSON-able parts (model config, statistics, world size)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def checkpoint_path(directory: str | os.PathLike[str], global_epoch: int) -> Path:
    return Path(directory) / f"epoch_{global_epoch:06d}.pt"


def list_checkpoints(directory: str | os.PathLike[str]) -> list[Path]:
    d = Path(directory)
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := _EPOCH_FILE.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(directory: str | os.PathLike[str]) -> Path | None:
    files = list_checkpoints(directory)
    return files[-1] if files else None


def save_checkpoint(directory: str | os.PathLike[str], state: dict[str, Any], keep: int = 2) -> Path:
    """Write ``state`` as the checkpoint of ``state['global_epoch']``; keep the newest ``keep`` files."""
    import torch

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    path = checkpoint_path(d, int(state["global_epoch"]))
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": FORMAT, "version": FORMAT_VERSION, **state}, tmp)
    os.replace(tmp, path)
    for old in list_checkpoints(d)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    import torch

    from cookie.exceptions import InputError

    state: dict[str, Any] = torch.load(Path(path), map_location="cpu", weights_only=True)
    if state.get("format") != FORMAT:
        raise InputError(f"{path}: not a cookie checkpoint; delete it or start a new run")
    if int(state.get("version", 0)) > FORMAT_VERSION:
        raise InputError(f"{path}: checkpoint version {state['version']} is newer than this code")
    return state


def write_json(directory: str | os.PathLike[str], name: str, obj: Any) -> Path:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    path = d / name
    _atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True, default=str))
    return path


def read_json(directory: str | os.PathLike[str], name: str) -> Any:
    return json.loads((Path(directory) / name).read_text())


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
