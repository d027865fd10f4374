"""The one typed configuration, loaded from YAML; every section is validated when the file loads.

* :mod:`~cookie.config.project` -- the whole file (:class:`Config`): sources, regions, views, labels, output;
* :mod:`~cookie.config.model` -- the ``model:`` section (:class:`ModelConfig`);
* :mod:`~cookie.config.train` -- the ``train:`` section (:class:`TrainConfig`);
* :mod:`~cookie.config.evaluation` -- the ``evaluation:`` section (:class:`EvaluationConfig`).

Pure pydantic: importing it loads no Spark, torch or MLflow.
"""

from cookie.config.evaluation import EvaluationConfig, TaskConfig
from cookie.config.model import ModelConfig
from cookie.config.project import (
    ArraySource,
    Config,
    FileRegions,
    H3Regions,
    IdRegions,
    OsmSource,
    RasterSource,
    TableSource,
    TripsSource,
    VectorSource,
    ViewConfig,
    load_config,
)
from cookie.config.train import TrainConfig
from cookie.exceptions import ConfigError

__all__ = [
    "ArraySource",
    "Config",
    "ConfigError",
    "EvaluationConfig",
    "FileRegions",
    "H3Regions",
    "IdRegions",
    "ModelConfig",
    "OsmSource",
    "RasterSource",
    "TableSource",
    "TaskConfig",
    "TrainConfig",
    "TripsSource",
    "VectorSource",
    "ViewConfig",
    "load_config",
]
