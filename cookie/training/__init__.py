"""Distributed training of the region models: Delta view tables in, a registered model and an
``embeddings`` table out.

Modules (import what you need; this package imports nothing heavy on its own, so the pyfunc
model loads without Spark):

* :mod:`~cookie.training.config` -- ``TrainConfig``, the YAML ``train:`` section (pure pydantic);
* :mod:`~cookie.training.features` -- preprocessing statistics and their application (numpy only);
* :mod:`~cookie.training.data` -- the driver's Spark aggregate and each rank's Parquet shard;
* :mod:`~cookie.training.checkpoint` -- per-epoch checkpoints and resume;
* :mod:`~cookie.training.distributed` -- the function every TorchDistributor rank runs (DDP);
* :mod:`~cookie.training.pyfunc` -- the MLflow pyfunc: view features -> embedding;
* :mod:`~cookie.training.job` -- ``train(spark, cfg, ...)``: the whole job, called by ``jobs/train.py``.
"""
