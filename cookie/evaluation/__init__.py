"""Downstream evaluation of frozen region embeddings, with the published protocols.

* :mod:`~cookie.evaluation.metrics` -- regression, distribution and clustering metrics (scikit-learn's where it has them);
* :mod:`~cookie.evaluation.protocols` -- Ridge K-fold (MVURE / MGFN / HREP / HAFusion), KMeans clustering,
  RegionDCL's random-forest split and land-use MLP, dominant-class classification, repeated shuffled and
  spatial-block variants;
* :mod:`~cookie.evaluation.runner` -- the configured tasks on one embedding, the report (markdown + maps);
* :mod:`~cookie.evaluation.report` / :mod:`~cookie.evaluation.maps` -- markdown tables, PNG maps;
* :mod:`~cookie.evaluation.html_map` -- the interactive map, one self-contained HTML file;
* :mod:`~cookie.evaluation.pipeline` -- the evaluate verb: a registered version -> metrics, report, MLflow;
* :mod:`~cookie.evaluation.promotion` -- champion / challenger decision and alias move;
* :mod:`~cookie.evaluation.selection` -- choosing a setting inside training rows only;
* :mod:`~cookie.evaluation.select` -- the select verb: view preprocessing and spatial context, chosen config.

Tables are read through :mod:`cookie.storage.delta`, MLflow through :mod:`cookie.storage.tracking`; progress
is logged under the ``cookie.evaluation`` logger.
"""
