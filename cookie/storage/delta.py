"""The one Delta module: where tables live, how they are written atomically, how they are read back.

Writes go through Spark (:func:`write_table`, :func:`append_rows`, :func:`replace_rows`); reads for
evaluation and lookups use the ``deltalake`` package (:func:`read_frame`, no JVM needed) or Spark
(:func:`read_table`). Region ids are aligned by id, never by position; :func:`order_ids` fixes the row
order used by the protocols that depend on it (unshuffled K-fold): ids that are all integers sort
numerically (Manhattan-180 ``"0".."179"`` in the published order), others as strings.

Each write is one Delta commit that replaces the whole table (``mode=overwrite`` with
``overwriteSchema``): readers see either the old or the new version, never a half-written table,
and a rerun of the same job gives the same contents as a new version, without duplicates.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from cookie import constants as C
from cookie.config import Config
from cookie.exceptions import ConcurrentRun, ConfigError, MissingTable


@dataclass(frozen=True)
class TableLocation:
    """A table is a path under the warehouse or a catalog name (``<catalog>.<schema>.<table>``)."""

    name: str
    path: str | None = None
    full_name: str | None = None

    def __str__(self) -> str:
        return self.full_name or self.path or self.name

    @property
    def sql(self) -> str:
        """The table in Spark SQL and in Spark's table APIs: each part of a catalog name in backticks
        (main.geo.helsinki_regions as three quoted parts), else ``delta.<path>`` with the path quoted."""
        if self.full_name:
            return ".".join(quote_identifier(p) for p in self.full_name.split("."))
        return f"delta.`{self.path}`"


def quote_identifier(part: str) -> str:
    """One identifier in backticks (a backtick inside doubled), as Spark SQL reads it."""
    return "`" + part.replace("`", "``") + "`"


def catalog_table_name(catalog: str, dataset: str, table: str) -> str:
    """The one naming rule of catalog tables: ``<catalog>.<schema>.<dataset>_<table>`` (``catalog`` is
    ``output.catalog``, i.e. ``<catalog>.<schema>``)."""
    return f"{catalog}.{dataset}_{table}"


def locate(cfg: Config, table: str) -> TableLocation:
    """Where ``table`` of the config's dataset lives: ``<warehouse>/<dataset>/<table>``, or with
    ``output.catalog: <catalog>.<schema>`` the managed table ``<catalog>.<schema>.<dataset>_<table>``."""
    if cfg.output.catalog:
        return TableLocation(table, full_name=catalog_table_name(cfg.output.catalog, cfg.dataset, table))
    return TableLocation(table, path=f"{cfg.warehouse_path()}/{table}")


def write_table(
    df: DataFrame,
    loc: TableLocation,
    properties: dict[str, str] | None = None,
    description: str | None = None,
) -> int:
    """Replace the table's contents and its properties in one Delta commit; return the new Delta version.

    ``CREATE OR REPLACE TABLE ... AS SELECT`` (DataFrameWriterV2): data, schema and properties (the feature
    names among them) land in the same commit, so no reader ever sees new columns with old names; the
    table's history stays readable by version. A concurrent commit to the same table is a
    :class:`ConcurrentRun` naming it.
    """
    writer = df.writeTo(loc.sql).using("delta")
    for k, v in (properties or {}).items():
        writer = writer.tableProperty(k, v)
    if description:
        writer = writer.option("userMetadata", description)
    try:
        writer.createOrReplace()
    except Exception as exc:
        _raise_if_conflict(exc, loc)
        raise
    return table_version(df.sparkSession, loc)


CONFLICTS = (
    "ConcurrentWriteException",
    "ConcurrentAppendException",
    "ConcurrentDeleteReadException",
    "ConcurrentDeleteDeleteException",
    "ConcurrentTransactionException",
    "MetadataChangedException",
    "ProtocolChangedException",
    "DELTA_CONCURRENT_",
    "DELTA_METADATA_CHANGED",
    "DELTA_PROTOCOL_CHANGED",
)


def _raise_if_conflict(exc: Exception, loc: TableLocation) -> None:
    """Delta's optimistic concurrency: another job committed to this table while ours was writing."""
    text = f"{type(exc).__name__}: {exc}"
    hit = next((c for c in CONFLICTS if c in text), None)
    if hit:
        raise ConcurrentRun(
            f"table {loc.name} at {loc}: another run committed to it while this one was writing "
            f"({hit.rstrip('_')}); nothing of this run's write to it was kept. Let the other run finish, then "
            "rerun this job (reruns are idempotent)"
        ) from exc


def append_rows(df: DataFrame, loc: TableLocation) -> None:
    """Append (used for the run log, where history is the point)."""
    writer = df.write.format("delta").mode("append").option("mergeSchema", "true")
    try:
        if loc.full_name:
            writer.saveAsTable(loc.sql)
        else:
            writer.save(loc.path)
    except Exception as exc:
        _raise_if_conflict(exc, loc)
        raise


def read_table(spark: SparkSession, loc: TableLocation, version: int | None = None) -> DataFrame:
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    return reader.table(loc.sql) if loc.full_name else reader.load(loc.path)


def table_version(spark: SparkSession, loc: TableLocation) -> int:
    if loc.path and "://" not in loc.path:  # local path: the newest commit file names the version
        commits = [int(p.stem) for p in (Path(loc.path) / "_delta_log").glob("*.json") if p.stem.isdigit()]
        if commits:
            return max(commits)
    row = spark.sql(f"DESCRIBE HISTORY {loc.sql} LIMIT 1").select("version").first()
    assert row is not None, f"table {loc} has no history"
    return int(row["version"])


def table_properties(spark: SparkSession, loc: TableLocation) -> dict[str, str]:
    rows = spark.sql(f"SHOW TBLPROPERTIES {loc.sql}").collect()
    return {r["key"]: r["value"] for r in rows}


def properties_at(spark: SparkSession, loc: TableLocation, version: int | None = None) -> dict[str, str]:
    """The table properties of ``version`` (default the newest; a catalog table: the newest's)."""
    if version is not None and loc.path:
        from deltalake import DeltaTable

        return dict(DeltaTable(loc.path, version=version).metadata().configuration)
    return table_properties(spark, loc)


def feature_names(
    spark: SparkSession, loc: TableLocation, version: int | None = None, props: dict[str, str] | None = None
) -> list[str]:
    """The ``cookie.feature_names`` property of the table (of ``version``, default the newest): the feature
    columns in order, written in the same commit as the data. ``props``: that version's properties
    (:func:`properties_at`) when the caller has read them already."""
    if props is None:
        props = properties_at(spark, loc, version)
    old_catalog_version = version is not None and not loc.path and version != table_version(spark, loc)
    if C.FEATURE_NAMES_PROPERTY in props and old_catalog_version:
        # catalog table at an older version: its columns in order are the names (same commit as the data)
        cols = read_table(spark, loc, version).columns
        return [c for c in cols if c not in (C.REGION_ID, C.PRESENT)]
    if C.FEATURE_NAMES_PROPERTY not in props:
        raise KeyError(f"table {loc} has no {C.FEATURE_NAMES_PROPERTY} property: not a feature table")
    names: list[str] = json.loads(props[C.FEATURE_NAMES_PROPERTY])
    return names


def table_exists(spark: SparkSession, loc: TableLocation) -> bool:
    if loc.full_name:
        return bool(spark.catalog.tableExists(loc.sql))
    assert loc.path is not None  # a location without a catalog name has a path
    if "://" not in loc.path:
        return (Path(loc.path) / "_delta_log").is_dir()
    from delta.tables import DeltaTable

    return bool(DeltaTable.isDeltaTable(spark, loc.path))


# --------------------------------------------------------------------------- the run manifest

SNAPSHOT = C.RUN_SNAPSHOT_COLUMN


def snapshot(cfg: Any, spark: SparkSession | None = None) -> dict[str, int]:
    """Table -> Delta version, as named by the newest complete feature run.

    The feature job writes its tables one after another, then appends its ``etl_runs`` row last: that row
    (the manifest) is the commit point of the run across tables. Readers of the regions, view and label
    tables read the versions it names, so a run killed half-way leaves them reading the previous complete
    run, never a mix. Empty before any run recorded one (readers then read the newest versions).
    Read with ``deltalake`` (no JVM, no Spark job) where the table is a local path or no ``spark`` is given,
    else (catalog tables, remote paths) with ``spark``.
    """
    loc = locate(cfg, C.RUNS_TABLE)
    local = loc.path is not None and "://" not in loc.path
    if spark is not None and not local:
        if not table_exists(spark, loc):
            return {}
        df = read_table(spark, loc)
        if SNAPSHOT not in df.columns:
            return {}
        row = df.where(F.col(SNAPSHOT).isNotNull()).orderBy(F.col("finished_at").desc()).select(SNAPSHOT).first()
        text = row[0] if row is not None else None
    else:
        try:
            pdf = read_frame(cfg, C.RUNS_TABLE)
        except MissingTable:
            return {}
        if SNAPSHOT not in pdf.columns or not pdf[SNAPSHOT].notna().any():
            return {}
        text = pdf[pdf[SNAPSHOT].notna()].sort_values("finished_at")[SNAPSHOT].iloc[-1]
    return {str(k): int(v) for k, v in json.loads(text).items()} if text else {}


def manifested(table: str) -> bool:
    """Tables whose readers go through the manifest: the feature job's own (not the run log, not embeddings)."""
    return table == C.REGIONS_TABLE or table.startswith((C.VIEW_PREFIX, C.LABEL_PREFIX))


def read_feature_table(spark: SparkSession, cfg: Any, table: str) -> DataFrame:
    """A regions/view/label table with Spark, at the version of the newest complete run (:func:`snapshot`)."""
    return read_table(spark, locate(cfg, table), snapshot(cfg, spark).get(table))


def feature_properties(kind: str, names: Iterable[str], extra: dict[str, str] | None = None) -> dict[str, str]:
    props = {C.TABLE_KIND_PROPERTY: kind, C.FEATURE_NAMES_PROPERTY: json.dumps(list(names))}
    props.update(extra or {})
    return props


def geometry_to_wkb(df: DataFrame, col: str = C.GEOMETRY) -> DataFrame:
    """Delta has no geometry type: store ISO WKB, rebuild with ST_GeomFromWKB on read."""
    return df.withColumn(C.GEOMETRY_WKB, F.expr(f"ST_AsBinary({col})")).drop(col)


# --------------------------------------------------------------------------- pandas reads (no Spark)

ID = C.REGION_ID
PRESENT = C.PRESENT


def _hint(cfg: Any, table: str) -> str:
    name = getattr(cfg, "name", "?")
    if table == "embeddings":
        return f"train and register a model first: make train CONFIG=conf/{name}.yaml"
    return f"build the feature tables first: make features CONFIG=conf/{name}.yaml"


def read_frame(
    cfg: Any,
    table: str,
    columns: Sequence[str] | None = None,
    filters: list[tuple[str, str, Any]] | None = None,
) -> pd.DataFrame:
    """One warehouse table as pandas (optionally only ``columns`` and rows matching ``filters``); the
    feature job's tables at the version of the newest complete run (:func:`snapshot`).

    ``filters`` are deltalake / pyarrow DNF conjunctions, e.g. ``[("model_version", "=", 3)]``.
    """
    loc = locate(cfg, table)
    version = snapshot(cfg).get(table) if manifested(table) else None
    if loc.full_name:
        return _read_catalog(cfg, loc, columns, filters, version)
    assert loc.path is not None  # a table outside the catalog has a path
    return read_delta(loc.path, columns, filters, hint=_hint(cfg, table), version=version)


def read_delta(
    path: str | Path,
    columns: Sequence[str] | None = None,
    filters: list[tuple[str, str, Any]] | None = None,
    hint: str = "",
    version: int | None = None,
) -> pd.DataFrame:
    """A Delta table at ``path`` (newest version, or ``version``) as pandas; :class:`MissingTable` when there
    is none."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        dt = DeltaTable(str(path), version=version)
    except TableNotFoundError as exc:
        raise MissingTable(f"no Delta table at {path}" + (f"; {hint}" if hint else "")) from exc
    return dt.to_pandas(columns=list(columns) if columns is not None else None, filters=filters or None)


def _read_catalog(
    cfg: Any,
    loc: TableLocation,
    columns: Sequence[str] | None,
    filters: list[tuple[str, str, Any]] | None,
    version: int | None = None,
) -> pd.DataFrame:
    from cookie.spark import build_session, settings_for  # only for catalog tables

    spark = build_session(settings_for(cfg, "evaluate"))
    if not spark.catalog.tableExists(loc.sql):
        raise MissingTable(f"no table {loc.full_name}; {_hint(cfg, loc.name)}")
    if version is not None:
        df = spark.sql(f"SELECT * FROM {loc.sql} VERSION AS OF {int(version)}")
    else:
        df = spark.table(loc.sql)
    for col, op, val in filters or []:
        if op not in ("=", "=="):
            raise ValueError(f"catalog reads support '=' filters only, got {op!r}")
        df = df.where(df[col] == val)
    if columns is not None:
        df = df.select(*columns)
    return df.toPandas()


def order_ids(ids: Sequence[str], order: Literal["natural", "lexicographic"] = "natural") -> list[str]:
    """Sorted region ids: numerically when ``order='natural'`` and every id is an integer, else as strings."""
    ids = [str(i) for i in ids]
    if order == "natural":
        try:
            return sorted(ids, key=lambda s: (int(s), s))
        except ValueError:
            pass
    return sorted(ids)


@dataclass
class LabelRows:
    """Targets of one task, aligned with ``ids``."""

    ids: list[str]
    values: np.ndarray  # (n,) or (n, k)
    columns: list[str]


def expand_columns(available: Sequence[str], columns: Sequence[str], exclude: Sequence[str] = ()) -> list[str]:
    """``columns`` with shell patterns (``share_*``) expanded against ``available`` (in table order), minus
    ``exclude`` (names or patterns). A plain name that is not available is kept (and reported missing later)."""
    from fnmatch import fnmatchcase

    out: list[str] = []
    for c in columns:
        if any(ch in c for ch in "*?["):
            out += [a for a in available if fnmatchcase(a, c) and a not in out and a not in (ID, PRESENT)]
        elif c not in out:
            out.append(c)
    return [c for c in out if not any(fnmatchcase(c, e) for e in exclude)]


def load_label(
    cfg: Any,
    table: str,
    columns: Sequence[str],
    subset_column: str | None = None,
    require_present: bool = True,
    normalise_rows: bool = False,
    exclude_columns: Sequence[str] = (),
    subset_table: str | None = None,
) -> LabelRows:
    """Label rows usable for a task: present (unless ``require_present=False``), in the subset, finite.

    ``columns`` may hold shell patterns (see :func:`expand_columns`). ``subset_column`` (of ``subset_table``,
    default ``table``) must be true / positive for a row to count. ``normalise_rows`` divides each row by
    its sum and drops rows summing to 0 (class-share targets).
    """
    df = read_frame(cfg, table)
    columns = expand_columns(list(df.columns), columns, exclude_columns)
    if not columns:
        raise ConfigError(f"{table}: no column matches the task's columns; it has {list(df.columns)}")
    missing = [c for c in [ID, *columns] if c not in df.columns]
    if missing:
        raise ConfigError(f"{table} has no column(s) {missing}; it has {list(df.columns)}")
    df[ID] = df[ID].astype(str)
    keep = np.ones(len(df), dtype=bool)
    if require_present and PRESENT in df.columns:
        keep &= df[PRESENT].fillna(False).to_numpy(dtype=bool)
    if subset_column:
        sub = df if subset_table in (None, table) else read_frame(cfg, subset_table)
        if subset_column not in sub.columns:
            raise ConfigError(f"{subset_table or table} has no subset column {subset_column!r}")
        members = set(sub[ID].astype(str)[sub[subset_column].fillna(0).astype(float).to_numpy() > 0])
        keep &= df[ID].isin(members).to_numpy()
    vals = df[list(columns)].to_numpy(dtype=float)
    if not require_present:
        vals = np.where(np.isfinite(vals), vals, 0.0)
    keep &= np.all(np.isfinite(vals), axis=1)
    if normalise_rows:
        s = vals.sum(axis=1)
        keep &= s > 0
        vals = vals / np.where(s > 0, s, 1.0)[:, None]
    ids = df[ID].astype(str).to_numpy()[keep]
    vals = vals[keep]
    return LabelRows(ids=list(ids), values=vals[:, 0] if len(columns) == 1 else vals, columns=list(columns))


def load_task_label(cfg: Any, task: Any) -> LabelRows:
    """:func:`load_label` with the table, columns and row filters of one ``evaluation.tasks`` entry."""
    return load_label(
        cfg,
        task.table,
        task.columns,
        task.subset_column,
        task.require_present,
        task.normalise_rows,
        task.exclude_columns,
        task.subset_table,
    )


def load_regions(cfg: Any) -> pd.DataFrame:
    """The ``regions`` table (region_id, centroid_lon, centroid_lat, geometry_wkb, ...), ids as strings."""
    df = read_frame(cfg, "regions")
    df[ID] = df[ID].astype(str)
    return df


#: evaluation.embedding_column values that select every block of one kind (the block-name prefix)
EMBEDDING_PARTS = ("unique", "shared")


@dataclass
class EmbeddingRows:
    """The embeddings of one model version: ``X[i]`` belongs to ``ids[i]``; blocks by name."""

    ids: list[str]
    X: np.ndarray
    blocks: dict[str, np.ndarray]
    model_name: str
    model_version: int | None
    run_id: str | None

    def column(self, name: str) -> np.ndarray:
        """``embedding`` (every block), one block by name, or a part: ``unique`` / ``shared``, the blocks whose
        names start with ``unique_`` / ``shared_`` side by side in stored order (CooKIE's and GFactorCL's
        unique and shared parts, which the method specification keeps addressable)."""
        if name == "embedding":
            return self.X
        if name in self.blocks:
            return self.blocks[name]
        if name in EMBEDDING_PARTS and (part := self._part(name)):
            return np.hstack(part)
        raise ConfigError(
            f"evaluation.embedding_column: no column {name!r}; have 'embedding', the parts "
            f"{[p for p in EMBEDDING_PARTS if self._part(p)]} and blocks {sorted(self.blocks)}"
        )

    def _part(self, prefix: str) -> list[np.ndarray]:
        return [self.blocks[n] for n in self._part_names(prefix)]

    def _part_names(self, prefix: str) -> list[str]:
        return [n for n in self.blocks if n.startswith(f"{prefix}_")]

    def columns_of(self, name: str) -> np.ndarray | None:
        """The column indices of ``X`` that :meth:`column` ``(name)`` holds, or ``None`` when the table has no
        such part or block (a raw baseline has no ``shared`` part). ``X`` must be the blocks side by side in
        stored order, as the trainer writes it."""
        if name == "embedding":
            return np.arange(self.X.shape[1])
        offsets, start = {}, 0
        for n, b in self.blocks.items():
            offsets[n] = np.arange(start, start + b.shape[1])
            start += b.shape[1]
        if name in self.blocks or (name in EMBEDDING_PARTS and self._part(name)):
            if start != self.X.shape[1] or not np.array_equal(np.hstack(list(self.blocks.values())), self.X):
                raise ConfigError(
                    f"evaluation.choose_parts: the embedding of {self.model_name!r} is not its blocks "
                    f"{sorted(self.blocks)} side by side, so {name!r} is not a set of its columns"
                )
            if name in self.blocks:
                return offsets[name]
            return np.concatenate([offsets[n] for n in self._part_names(name)])
        return None


def _stack(col: pd.Series) -> np.ndarray:
    rows = [np.asarray(v, dtype=float) for v in col]
    widths = {r.shape[0] for r in rows}
    if len(widths) != 1:
        raise ValueError(f"embedding arrays have different lengths {sorted(widths)}")
    return np.vstack(rows) if rows else np.zeros((0, 0))


def load_embeddings(
    cfg: Any,
    model_name: str,
    model_version: int | None = None,
    run_id: str | None = None,
    table: str = "embeddings",
) -> EmbeddingRows:
    """Rows of the embeddings table for one model version (or one training run).

    The table follows the trainer's contract: ``region_id, model_name, model_version, run_id, created_at,
    embedding`` and one array column per named block (``unique_<view>``, ``shared_<a>__<b>``). When the same
    version was written more than once, the rows of the latest ``created_at`` are kept.
    """
    if model_version is None and run_id is None:
        raise ValueError("give model_version or run_id")
    filters: list[tuple[str, str, Any]] = [("model_name", "=", model_name)]
    if model_version is not None:
        filters.append(("model_version", "=", int(model_version)))
    if run_id is not None:
        filters.append(("run_id", "=", run_id))
    df = read_frame(cfg, table, filters=filters)
    if df.empty:
        what = f"version {model_version}" if model_version is not None else f"run {run_id}"
        raise MissingTable(f"{table} has no rows for model {model_name!r} {what}; {_hint(cfg, 'embeddings')}")
    if "created_at" in df.columns and df["created_at"].nunique() > 1:
        df = df[df["created_at"] == df["created_at"].max()]
    if df[ID].duplicated().any():
        raise ValueError(f"{table}: duplicate region ids for model {model_name!r} version {model_version}")
    df = df.assign(**{ID: df[ID].astype(str)})
    fixed = {ID, C.REGION_ORDER, "model_name", "model_version", "run_id", "created_at", "embedding"}
    # other models' block columns are null on this model's rows (one table, schema merged across models)
    blocks = {c: _stack(df[c]) for c in df.columns if c not in fixed and df[c].dtype == object and df[c].notna().all()}
    versions = df["model_version"].dropna().unique() if "model_version" in df.columns else []
    runs = df["run_id"].dropna().unique() if "run_id" in df.columns else []
    return EmbeddingRows(
        ids=list(df[ID]),
        X=_stack(df["embedding"]),
        blocks=blocks,
        model_name=model_name,
        model_version=int(versions[0]) if len(versions) == 1 else model_version,
        run_id=str(runs[0]) if len(runs) == 1 else run_id,
    )
