"""What every job does first: load the config and start the session, failing with one clear line.

Exit codes shared by the jobs: 1 bad input data, 2 bad config, 3 Sedona or Delta jars missing.
"""

from __future__ import annotations

import sys
from typing import NoReturn

from pyspark.sql import SparkSession

from cookie.config import Config, ConfigError, load_config


def fail(exc: BaseException | str, code: int) -> NoReturn:
    print(f"error: {exc}", file=sys.stderr)
    raise SystemExit(code)


def config_or_exit(path: str, with_model: bool = False) -> Config:
    """The validated config (and its ``model:`` section when asked), or exit 2 naming the bad key."""
    try:
        cfg = load_config(path)
        if with_model:
            cfg.model_settings()
        return cfg
    except ConfigError as exc:
        fail(exc, 2)


def session_or_exit(cfg: Config, app: str, master: str | None = None) -> SparkSession:
    """A session with Sedona and Delta loaded, or exit 3 naming the missing jar."""
    from cookie.spark import StackNotLoaded, build_session, settings_for

    try:
        return build_session(settings_for(cfg, app, master))
    except StackNotLoaded as exc:
        fail(exc, 3)
