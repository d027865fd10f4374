"""One module per kind of view; each is a pure ``DataFrame -> DataFrame`` transform.

Every transform returns a :class:`~cookie.etl.features.common.ViewResult`: one row per region (zeros
where the region has no data, never a missing row or NaN), the ordered feature names, and counts
of what was rejected on the way.
"""
