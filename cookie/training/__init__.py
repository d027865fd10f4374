"""Distributed training of the region models: Delta view tables in, a trained model out.

* :mod:`~cookie.training.data` -- the driver's Spark aggregate (preprocessing statistics) and each rank's shard;
* :mod:`~cookie.training.checkpoint` -- checkpoints and resume;
* :mod:`~cookie.training.distributed` -- the function every TorchDistributor rank runs (DDP);
* :mod:`~cookie.training.job` -- ``train(spark, cfg, ...)``: statistics, TorchDistributor, the MLflow run.

Registration and the embeddings table are composed on top (:mod:`cookie.pipeline`): training knows
nothing of serving.
"""
