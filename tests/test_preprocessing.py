"""The one preprocessing module (the method specification section 1): z-scores, counts, shares, masks."""

from __future__ import annotations

import numpy as np
import pytest

from cookie.preprocessing import fit_view, log1p_zscore, transform_view, zscore


def test_zscore_guards_zero_variance_nan_and_masks() -> None:
    x = np.array([[1.0, 5.0, 0.0], [3.0, 5.0, np.nan], [5.0, 5.0, 2.0], [100.0, 7.0, 9.0]])
    mask = np.array([True, True, True, False])
    z = zscore(x, mask)
    assert np.isfinite(z).all()
    assert np.all(z[:3, 1] == 0)  # constant column on present rows -> 0, not NaN
    assert np.all(z[3] == 0)  # masked row -> zeros
    assert z[1, 2] == 0  # NaN cell -> the mean
    np.testing.assert_allclose(z[:3, 0], [-1.2247449, 0.0, 1.2247449], atol=1e-5)


def test_constant_float32_column_is_constant() -> None:
    x = np.full((50, 1), 1234.567, dtype=np.float32) + np.float32(1e-4) * np.arange(50)[:, None] % 2 * 0
    assert np.all(zscore(x) == 0)


def test_log1p_zscore_counts_and_shares() -> None:
    counts = np.array([[0, 10], [9, 10], [99, 10], [-3, 10]])
    z = log1p_zscore(counts)
    assert np.isfinite(z).all() and np.all(z[:, 1] == 0)
    assert z[0, 0] == z[3, 0]  # negative counts clip to 0
    assert abs(float(z[:, 0].mean())) < 1e-6
    sh = fit_view("s", np.zeros((2, 2)), kind="shares")
    out = transform_view(np.array([[0.2, np.nan], [1.3, -0.1]]), None, sh, nan_policy="zero")
    np.testing.assert_array_equal(out, np.array([[0.2, 0.0], [1.0, 0.0]], dtype=np.float32))


def test_nan_in_a_present_row_is_named() -> None:
    st = fit_view("poi", np.ones((3, 2)), kind="zscore", features=["a", "b"])
    with pytest.raises(ValueError, match="region 'r2'.*feature 'b'"):
        transform_view(np.array([[1.0, 1.0], [1.0, 1.0], [1.0, np.nan]]), None, st, region_ids=["r0", "r1", "r2"])


def test_count_space_follows_what_the_etl_wrote() -> None:
    """Which features 'thin' may resample, and in which space, from the view kind, the preprocessing and the ETL."""
    from cookie.preprocessing import count_space

    assert count_space("counts", "points", ["a", "b"]) == ["log", "log"]
    assert count_space("zscore", "raster", ["b1_mean"]) == ["none"]
    assert count_space("embedding", "vectors", ["e0"]) == ["none"]
    assert count_space("zscore", "vectors", ["e0"], etl_transform="log1p") == ["log"]
    flows = ["outflow", "inflow", "self_flow", "out_00000", "in_00001", "ctx_adj__out_00000", "ctx_flows__inflow"]
    assert count_space("zscore", "flows", flows) == ["linear"] * 3 + ["log"] * 3 + ["linear"]
    assert count_space("zscore", "flows", flows, flow_values="counts")[3:6] == ["linear"] * 3
    assert count_space("zscore", "flows", ["outflow", "out_svd_00", "in_svd_01"]) == ["linear", "none", "none"]
