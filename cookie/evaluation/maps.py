"""PNG maps of region values and embeddings, drawn with geopandas (``GeoSeries.plot``) on matplotlib's Agg
canvas.

Figures are ``matplotlib.figure.Figure`` objects rendered by the Agg canvas directly, so no GUI window is
opened and the global backend is never switched (safe in Spark executors and test runs).

Regions can be given as (see :func:`region_series`)

* a GeoSeries or GeoDataFrame (its ``geometry`` and CRS),
* a sequence of shapely geometries, WKB ``bytes`` (the ``geometry_wkb`` column of the regions table) or
  GeoJSON-like dicts / features; ``None`` for a region without geometry,
* a GeoJSON ``FeatureCollection`` dict.

Geometries in longitude / latitude (the regions table stores WGS84) are drawn in a local metric projection
(azimuthal equidistant, centred on the regions), so that shapes keep their proportions: H3 hexagons look
like hexagons, not like hexagons stretched by 1 / cos(latitude). Projected geometries are drawn as they are.

Values are aligned with the regions by position. Regions with a NaN value are drawn in light grey; regions
without a geometry are not drawn.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from numpy.typing import ArrayLike

__all__ = ["local_projection", "pca_rgb", "plot_embedding_rgb", "plot_predicted_vs_actual", "region_series"]

_NAN_COLOUR = (0.85, 0.85, 0.85, 1.0)
WGS84 = "EPSG:4326"


def _geometry(g: Any) -> Any:
    import shapely
    import shapely.geometry

    if g is None:
        return None
    if isinstance(g, (bytes, bytearray, memoryview)):
        return shapely.from_wkb(bytes(g))
    if isinstance(g, Mapping):
        if g.get("type") == "Feature":
            g = g.get("geometry")
            if g is None:
                return None
        return shapely.geometry.shape(g)
    if hasattr(g, "__geo_interface__"):
        return g if isinstance(g, shapely.Geometry) else shapely.geometry.shape(g.__geo_interface__)
    if isinstance(g, float) and np.isnan(g):
        return None
    raise TypeError(f"cannot read a geometry from {type(g).__name__}")


def _looks_geographic(gs: Any) -> bool:
    valid = gs[~(gs.isna() | gs.is_empty)]
    if valid.empty:
        return False
    xmin, ymin, xmax, ymax = valid.total_bounds
    return bool(xmin >= -180 and xmax <= 180 and ymin >= -90 and ymax <= 90)


def region_series(regions: Any, crs: Any | None = None) -> Any:
    """The regions as a ``geopandas.GeoSeries`` (one entry per region, ``None`` where a region has no
    geometry), with ``crs`` if given, else the input's CRS, else WGS84 when every coordinate lies within
    longitude / latitude bounds (else no CRS)."""
    import geopandas as gpd

    if isinstance(regions, gpd.GeoDataFrame):
        regions = regions.geometry
    if isinstance(regions, gpd.GeoSeries):
        gs = regions.reset_index(drop=True)
    else:
        if isinstance(regions, Mapping):
            if regions.get("type") != "FeatureCollection":
                raise TypeError("a single mapping must be a GeoJSON FeatureCollection")
            regions = regions["features"]
        gs = gpd.GeoSeries([_geometry(g) for g in regions])
    if crs is not None:
        gs = gs.set_crs(crs, allow_override=True)
    elif gs.crs is None and _looks_geographic(gs):
        gs = gs.set_crs(WGS84)
    return gs


def local_projection(gs: Any) -> Any:
    """``gs`` in metres: geographic geometries go to an azimuthal equidistant projection centred on their
    bounding box (distortion well under 1 % within a few hundred km of the centre); projected ones and
    ones without a CRS are returned unchanged."""
    if gs.crs is None or not gs.crs.is_geographic:
        return gs
    valid = gs[~(gs.isna() | gs.is_empty)]
    if valid.empty:
        return gs
    xmin, ymin, xmax, ymax = valid.total_bounds
    lon0, lat0 = (xmin + xmax) / 2, (ymin + ymax) / 2
    return gs.to_crs(f"+proj=aeqd +lat_0={lat0:.8f} +lon_0={lon0:.8f} +datum=WGS84 +units=m +no_defs")


def _prepared(regions: Any, crs: Any | None) -> Any:
    return local_projection(region_series(regions, crs))


def _credit(fig: Any, credit: str) -> None:
    """The data's attribution (``credit``, e.g. OpenStreetMap's) in the figure's bottom-right corner."""
    if credit:
        fig.text(0.995, 0.005, credit, ha="right", va="bottom", fontsize=6, color="#555")


def _draw(ax: Any, gs: Any, facecolors: list[Any], edgecolor: str = "white", linewidth: float = 0.2) -> None:
    """Draw the regions that have a geometry, each in its colour, with equal axis scales (metres)."""
    has = np.asarray(~(gs.isna() | gs.is_empty))
    if has.any():
        colours = np.asarray(facecolors, dtype=float)[has]
        gs[has].plot(ax=ax, color=colours, edgecolor=edgecolor, linewidth=linewidth, aspect="equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel("")
    ax.set_ylabel("")


def _colours(values: np.ndarray, cmap: Any, norm: Normalize) -> list[Any]:
    cm = matplotlib.colormaps[cmap] if isinstance(cmap, str) else cmap
    return [_NAN_COLOUR if not np.isfinite(v) else cm(norm(v)) for v in values]


def plot_predicted_vs_actual(
    regions: Any,
    actual: ArrayLike,
    predicted: ArrayLike,
    path: str | Path,
    title: str | None = None,
    cmap: str = "viridis",
    label: str = "",
    show_residual: bool = False,
    dpi: int = 120,
    crs: Any | None = None,
    credit: str = "",
) -> Path:
    """Write a PNG with the actual and predicted values side by side, on one shared colour scale.

    Args:
        regions: region geometries (see :func:`region_series`), ``N`` of them.
        actual, predicted: ``(N,)`` values; NaN (e.g. a region never in a test split) is drawn grey.
        path: output PNG path (parent folders are created).
        title: figure title.
        label: colour-bar label (e.g. the target's unit).
        show_residual: add a third panel with ``predicted - actual`` on a diverging scale.
        crs: CRS of the geometries (default: the input's, else WGS84 for lon / lat coordinates).

    Returns:
        The path written.
    """
    gs = _prepared(regions, crs)
    a = np.asarray(actual, dtype=float).reshape(-1)
    p = np.asarray(predicted, dtype=float).reshape(-1)
    if not (len(gs) == len(a) == len(p)):
        raise ValueError(f"got {len(gs)} regions, {len(a)} actual and {len(p)} predicted values")
    both = np.concatenate([a[np.isfinite(a)], p[np.isfinite(p)]])
    vmin, vmax = (float(both.min()), float(both.max())) if both.size else (0.0, 1.0)
    if vmin == vmax:
        vmax = vmin + 1.0
    norm = Normalize(vmin=vmin, vmax=vmax)
    n_panels = 3 if show_residual else 2
    fig = Figure(figsize=(5.0 * n_panels, 5.5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, n_panels)
    for ax, vals, name in zip(axes, (a, p), ("actual", "predicted"), strict=False):
        _draw(ax, gs, _colours(vals, cmap, norm))
        ax.set_title(name)
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=list(axes[:2]), shrink=0.8, label=label)
    if show_residual:
        res = p - a
        lim = float(np.nanmax(np.abs(res))) if np.any(np.isfinite(res)) else 1.0
        rnorm = Normalize(vmin=-(lim or 1.0), vmax=lim or 1.0)
        _draw(axes[2], gs, _colours(res, "RdBu_r", rnorm))
        axes[2].set_title("predicted - actual")
        fig.colorbar(ScalarMappable(norm=rnorm, cmap="RdBu_r"), ax=axes[2], shrink=0.8)
    if title:
        fig.suptitle(title)
    _credit(fig, credit)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    return out


def pca_rgb(X: ArrayLike, clip_quantile: float = 0.01) -> np.ndarray:
    """RGB colours ``(N, 3)`` in [0, 1] from the first three principal components of ``X``.

    Each component is scaled to [0, 1] between its ``clip_quantile`` and ``1 - clip_quantile``
    quantiles (values outside are clipped), so a few outliers do not wash out the map. Fewer than three
    components (``d < 3`` or ``N < 3``) fill the missing channels with 0.5. Rows with NaN get NaN.
    """
    Xa = np.asarray(X, dtype=float)
    if Xa.ndim != 2:
        raise ValueError(f"X must be (N, d), got {Xa.shape}")
    ok = np.all(np.isfinite(Xa), axis=1)
    rgb = np.full((Xa.shape[0], 3), np.nan)
    Z = Xa[ok]
    if Z.shape[0] == 0:
        return rgb
    Z = Z - Z.mean(axis=0)
    _, _, vt = np.linalg.svd(Z, full_matrices=False)
    n_comp = min(3, vt.shape[0])
    comps = Z @ vt[:n_comp].T
    # deterministic sign: the largest-magnitude loading of each component is positive
    signs = np.sign(vt[:n_comp][np.arange(n_comp), np.argmax(np.abs(vt[:n_comp]), axis=1)])
    comps = comps * np.where(signs == 0, 1.0, signs)
    out = np.full((Z.shape[0], 3), 0.5)
    for j in range(n_comp):
        c = comps[:, j]
        lo, hi = np.quantile(c, [clip_quantile, 1 - clip_quantile])
        out[:, j] = 0.5 if hi <= lo else np.clip((c - lo) / (hi - lo), 0.0, 1.0)
    rgb[ok] = out
    return rgb


def plot_embedding_rgb(
    regions: Any,
    X: ArrayLike,
    path: str | Path,
    title: str | None = None,
    clip_quantile: float = 0.01,
    dpi: int = 120,
    crs: Any | None = None,
    credit: str = "",
) -> Path:
    """Write a PNG map colouring each region by the first three principal components of its embedding
    (PC1 = red, PC2 = green, PC3 = blue; see :func:`pca_rgb`). Regions whose embedding has NaN are grey.

    Returns:
        The path written.
    """
    gs = _prepared(regions, crs)
    rgb = pca_rgb(X, clip_quantile=clip_quantile)
    if len(gs) != rgb.shape[0]:
        raise ValueError(f"got {len(gs)} regions and {rgb.shape[0]} embedding rows")
    colours = [_NAN_COLOUR if not np.all(np.isfinite(c)) else (*c, 1.0) for c in rgb]
    fig = Figure(figsize=(6, 6), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    _draw(ax, gs, colours, linewidth=0.1)
    ax.set_title(title or "embedding PCA (R, G, B = PC1, PC2, PC3)")
    _credit(fig, credit)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    return out
