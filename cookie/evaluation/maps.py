"""PNG maps of region values and embeddings (matplotlib's Agg renderer; no GUI, no geopandas needed).

Figures are built with ``matplotlib.figure.Figure`` and rendered with the Agg canvas directly, so
``pyplot`` and the global backend are never touched (safe in Spark executors and test runs).

Regions can be given as

* a sequence of geometries exposing ``__geo_interface__`` (shapely ``Polygon`` / ``MultiPolygon``),
* a GeoDataFrame or GeoSeries (its ``geometry``),
* GeoJSON-like dicts (``{"type": "Polygon", "coordinates": ...}``), or a GeoJSON ``FeatureCollection``
  dict / a list of GeoJSON features.

Values are aligned with the regions by position. Regions with a NaN value are drawn in light grey.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.collections import PatchCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import PathPatch
from matplotlib.path import Path as MplPath
from numpy.typing import ArrayLike

__all__ = ["pca_rgb", "plot_embedding_rgb", "plot_predicted_vs_actual", "region_paths"]

_NAN_COLOUR = (0.85, 0.85, 0.85, 1.0)


def _geo_mappings(regions: Any) -> list[Mapping[str, Any]]:
    if isinstance(regions, Mapping):
        if regions.get("type") == "FeatureCollection":
            return [f["geometry"] for f in regions["features"]]
        raise TypeError("a single mapping must be a GeoJSON FeatureCollection")
    if hasattr(regions, "columns") and hasattr(regions, "geometry"):  # GeoDataFrame
        regions = list(regions.geometry)
    out = []
    for g in regions:
        if isinstance(g, Mapping):
            if g.get("type") == "Feature":
                g = g["geometry"]
            out.append(g)
        elif hasattr(g, "__geo_interface__"):
            out.append(g.__geo_interface__)
        else:
            raise TypeError(f"cannot read a geometry from {type(g).__name__}")
    return out


def _ring_codes(n: int) -> list[int]:
    return [MplPath.MOVETO] + [MplPath.LINETO] * (n - 2) + [MplPath.CLOSEPOLY]


def _polygon_parts(geom: Mapping[str, Any]) -> list[Sequence[Sequence[Sequence[float]]]]:
    t = geom.get("type")
    if t == "Polygon":
        return [geom["coordinates"]]
    if t == "MultiPolygon":
        return list(geom["coordinates"])
    if t == "GeometryCollection":
        parts: list[Any] = []
        for g in geom.get("geometries", []):
            parts += _polygon_parts(g)
        return parts
    raise TypeError(f"only polygonal geometries can be mapped, got {t!r}")


def region_paths(regions: Any) -> list[MplPath]:
    """One compound matplotlib path per region (exterior rings and holes, all parts of a MultiPolygon)."""
    paths = []
    for geom in _geo_mappings(regions):
        verts: list[np.ndarray] = []
        codes: list[int] = []
        for poly in _polygon_parts(geom):
            for ring in poly:
                r = np.asarray(ring, dtype=float)[:, :2]
                if len(r) < 3:
                    continue
                if not np.allclose(r[0], r[-1]):
                    r = np.vstack([r, r[:1]])
                verts.append(r)
                codes += _ring_codes(len(r))
        if not verts:
            paths.append(MplPath(np.zeros((1, 2)), [MplPath.MOVETO]))
        else:
            paths.append(MplPath(np.vstack(verts), codes))
    return paths


def _draw(
    ax: Any, paths: list[MplPath], facecolors: Sequence[Any], edgecolor: str = "white", linewidth: float = 0.2
) -> None:
    patches = [PathPatch(p) for p in paths]
    coll = PatchCollection(patches, facecolors=facecolors, edgecolors=edgecolor, linewidths=linewidth)
    ax.add_collection(coll)
    allv = np.vstack([p.vertices for p in paths if len(p.vertices) > 1] or [np.zeros((1, 2))])
    xmin, ymin = allv.min(axis=0)
    xmax, ymax = allv.max(axis=0)
    padx = (xmax - xmin) * 0.02 or 1.0
    pady = (ymax - ymin) * 0.02 or 1.0
    ax.set_xlim(xmin - padx, xmax + padx)
    ax.set_ylim(ymin - pady, ymax + pady)
    # lon / lat degrees: stretch by 1 / cos(latitude) so that shapes are not squashed; metres: equal
    if -180 <= xmin and xmax <= 180 and -90 <= ymin and ymax <= 90 and (xmax - xmin) < 60:
        ax.set_aspect(1.0 / max(np.cos(np.radians((ymin + ymax) / 2)), 0.1))
    else:
        ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


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
) -> Path:
    """Write a PNG with the actual and predicted values side by side, on one shared colour scale.

    Args:
        regions: region geometries (see the module docstring), ``N`` of them.
        actual, predicted: ``(N,)`` values; NaN (e.g. a region never in a test split) is drawn grey.
        path: output PNG path (parent folders are created).
        title: figure title.
        label: colour-bar label (e.g. the target's unit).
        show_residual: add a third panel with ``predicted - actual`` on a diverging scale.

    Returns:
        The path written.
    """
    paths = region_paths(regions)
    a = np.asarray(actual, dtype=float).reshape(-1)
    p = np.asarray(predicted, dtype=float).reshape(-1)
    if not (len(paths) == len(a) == len(p)):
        raise ValueError(f"got {len(paths)} regions, {len(a)} actual and {len(p)} predicted values")
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
        _draw(ax, paths, _colours(vals, cmap, norm))
        ax.set_title(name)
    sm = ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(sm, ax=list(axes[:2]), shrink=0.8, label=label)
    if show_residual:
        res = p - a
        lim = float(np.nanmax(np.abs(res))) if np.any(np.isfinite(res)) else 1.0
        rnorm = Normalize(vmin=-(lim or 1.0), vmax=lim or 1.0)
        _draw(axes[2], paths, _colours(res, "RdBu_r", rnorm))
        axes[2].set_title("predicted - actual")
        fig.colorbar(ScalarMappable(norm=rnorm, cmap="RdBu_r"), ax=axes[2], shrink=0.8)
    if title:
        fig.suptitle(title)
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
) -> Path:
    """Write a PNG map colouring each region by the first three principal components of its embedding
    (PC1 = red, PC2 = green, PC3 = blue; see :func:`pca_rgb`). Regions whose embedding has NaN are grey.

    Returns:
        The path written.
    """
    paths = region_paths(regions)
    rgb = pca_rgb(X, clip_quantile=clip_quantile)
    if len(paths) != rgb.shape[0]:
        raise ValueError(f"got {len(paths)} regions and {rgb.shape[0]} embedding rows")
    colours = [_NAN_COLOUR if not np.all(np.isfinite(c)) else (*c, 1.0) for c in rgb]
    fig = Figure(figsize=(6, 6), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    _draw(ax, paths, colours, linewidth=0.1)
    ax.set_title(title or "embedding PCA (R, G, B = PC1, PC2, PC3)")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    return out
