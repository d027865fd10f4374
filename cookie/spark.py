"""The one place that builds a SparkSession with Sedona and Delta, and proves both are loaded.

Three launch modes behave differently (see the stack notes): plain ``python``/pytest, where we start
the JVM and can ask Ivy for the jars; ``spark-submit``, where jars must come from ``--packages``
because builder-set ``spark.jars.packages`` is silently ignored; and Databricks, where Delta is built
in and Sedona comes from cluster libraries.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyspark.sql import SparkSession
from pyspark.util import inheritable_thread_target

from cookie.exceptions import StackNotLoaded

if TYPE_CHECKING:
    from cookie.config import Config

SPARK_MINOR = "4.0"
SCALA = "2.13"
SEDONA_VERSION = "1.8.0"
GEOTOOLS_WRAPPER = "org.datasyslab:geotools-wrapper:1.8.0-33.1"
DELTA_VERSION = "4.4.0"

SEDONA_PACKAGE = f"org.apache.sedona:sedona-spark-shaded-{SPARK_MINOR}_{SCALA}:{SEDONA_VERSION}"
DELTA_PACKAGE = f"io.delta:delta-spark_{SPARK_MINOR}_{SCALA}:{DELTA_VERSION}"
PACKAGES = (DELTA_PACKAGE, SEDONA_PACKAGE, GEOTOOLS_WRAPPER)


@dataclass(frozen=True)
class SparkSettings:
    """What a caller may choose about the session; everything else is fixed here."""

    app_name: str = "cookie"
    master: str | None = None  # None: keep spark-submit's or the cluster's master, else local[*]
    driver_memory: str = "4g"
    shuffle_partitions: int = 8
    ivy_dir: str | None = None  # Ivy cache for the jars; default <project>/.ivy2 or $COOKIE_IVY_DIR
    extra_conf: tuple[tuple[str, str], ...] = ()
    write_class_archive: str | None = None  # dump the driver JVM's loaded classes here at its exit (``--warm``)


def settings_for(cfg: Config, app: str, master: str | None = None) -> SparkSettings:
    """Session settings from a config's ``spark:`` section; ``master`` (e.g. a CLI flag) wins."""
    return SparkSettings(
        app_name=f"cookie-{app}-{cfg.name}",
        master=master or cfg.spark.master,
        driver_memory=cfg.spark.driver_memory,
        shuffle_partitions=cfg.spark.shuffle_partitions,
        extra_conf=tuple(cfg.spark.conf.items()),
    )


def packages_argument() -> str:
    """The ``--packages`` value spark-submit needs for this project."""
    return ",".join(PACKAGES)


def cached_jars(ivy_dir: str) -> list[str] | None:
    """Jars a previous resolution left in the Ivy folder, if it resolved exactly our packages.

    Passing them as ``spark.jars`` skips Ivy entirely: no network and about ten seconds less per start.
    """
    marker = Path(ivy_dir) / "cookie-packages.txt"
    jars = sorted(str(p) for p in (Path(ivy_dir) / "jars").glob("*.jar"))
    if marker.is_file() and marker.read_text().strip() == packages_argument() and jars:
        return jars
    return None


def mark_resolved(ivy_dir: str) -> None:
    Path(ivy_dir).mkdir(parents=True, exist_ok=True)
    (Path(ivy_dir) / "cookie-packages.txt").write_text(packages_argument() + "\n")


#: JVM unified-logging tags of class data sharing, silenced: they print on stdout, which CLI verbs own.
QUIET_CDS = ("-Xlog:cds=off", "-Xlog:cds+dynamic=off")


def class_archive(ivy_dir: str) -> Path:
    """The driver JVM's class-data-sharing archive (the JDK's dynamic AppCDS), kept beside the jars.

    The classes a job loads (Spark, Scala, Delta, Sedona, GeoTools) are mapped from it at start instead of
    being read, verified and defined from the jars every time: 2-4 s less per JVM start on 2 cores. The name
    holds the JVM, the packages and pyspark's jars (path, size and time of each: the JVM refuses an archive
    whose class path changed, e.g. a reinstalled virtual environment), so any change looks for a new archive.
    """
    import pyspark

    java = os.path.realpath(os.environ.get("JAVA_HOME") or shutil.which("java") or "java")
    parts = [java, pyspark.__version__, packages_argument()]
    for jar in sorted((Path(pyspark.__file__).resolve().parent / "jars").glob("*.jar")):
        st = jar.stat()
        parts.append(f"{jar}:{st.st_size}:{st.st_mtime_ns}")
    key = hashlib.sha256("|".join(parts).encode()).hexdigest()[:12]
    return Path(ivy_dir) / f"cookie-classes-{key}.jsa"


#: The driver JVM's garbage collector where the config's own options choose none: the throughput collector. A
#: batch job whose executors share the driver's JVM and a few cores spends less on collection with it than with
#: the default G1, whose concurrent threads take cores from the tasks (30 M points into 2,325 tracts, 2 cores:
#: the feature job 40.3-40.7 s against 42.9-47.4 s, peak memory alike).
DEFAULT_GC = "-XX:+UseParallelGC"


def driver_java_options(settings: SparkSettings, ivy_dir: str) -> str:
    """``spark.driver.extraJavaOptions`` for a driver JVM this process starts: the config's own options, the
    collector (:data:`DEFAULT_GC`, unless those options name one), then the class archive's (written with
    ``write_class_archive``, else used when ``--warm`` left one)."""
    own = dict(settings.extra_conf).get("spark.driver.extraJavaOptions", "").strip()
    gc = [] if re.search(r"-XX:\+Use\w+GC\b", own) else [DEFAULT_GC]
    if settings.write_class_archive:
        cds = [f"-XX:ArchiveClassesAtExit={settings.write_class_archive}", *QUIET_CDS]
    elif (archive := class_archive(ivy_dir)).is_file():
        cds = [f"-XX:SharedArchiveFile={archive}", *QUIET_CDS]
    else:
        cds = []
    return " ".join([own, *gc, *cds]).strip()


def default_ivy_dir() -> str:
    env = os.environ.get("COOKIE_IVY_DIR")
    if env:
        return os.path.abspath(env)
    return str(Path(__file__).resolve().parent.parent / ".ivy2")


def on_databricks() -> bool:
    return "DATABRICKS_RUNTIME_VERSION" in os.environ


def under_spark_submit() -> bool:
    # Set only when a JVM already exists, i.e. spark-submit (or pyspark shell) launched us.
    return "PYSPARK_GATEWAY_PORT" in os.environ


def build_session(settings: SparkSettings | None = None) -> SparkSession:
    """Return a session with Delta and Sedona registered, failing fast if either is missing."""
    s = settings or SparkSettings()
    if on_databricks():
        spark = SparkSession.builder.getOrCreate()
    else:
        builder = (
            SparkSession.builder.appName(s.app_name)
            .config(
                "spark.sql.extensions",
                "io.delta.sql.DeltaSparkSessionExtension,org.apache.sedona.sql.SedonaSqlExtensions",
            )
            .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
            .config("spark.serializer", "org.apache.spark.serializer.KryoSerializer")
            .config("spark.kryo.registrator", "org.apache.sedona.core.serde.SedonaKryoRegistrator")
            .config("spark.sql.shuffle.partitions", str(s.shuffle_partitions))
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.adaptive.enabled", "true")
            # Delta replays a table's log (its snapshot) with 50 partitions by default, at every read and twice per
            # write. The project's tables hold a few files each (one commit replaces a whole table), so one
            # partition does: 2-3 s less per feature job of the demo on 2 cores. Commit statistics would
            # replay the new snapshot once more after each commit, for Delta's usage logs only.
            .config("spark.databricks.delta.snapshotPartitions", "1")
            .config("spark.databricks.delta.commitStats.collect", "false")
            .config("spark.sql.adaptive.coalescePartitions.initialPartitionNum", str(s.shuffle_partitions))
            # Rows go to the Python workers (mapInArrow, mapInPandas) in batches of maxRecordsPerBatch (10,000). A
            # byte limit as well (256 MB by default) makes Spark measure the batch after every row it adds: 7 % of
            # the points view's join at 10 M points. Int.MaxValue switches that check off.
            .config("spark.sql.execution.arrow.maxBytesPerBatch", str(2**31 - 1))
        )
        for key, value in s.extra_conf:
            builder = builder.config(key, value)
        resolved_now = False
        if not under_spark_submit():
            ivy = s.ivy_dir or default_ivy_dir()
            builder = builder.master(s.master or "local[*]").config("spark.driver.memory", s.driver_memory)
            # Python workers (RDD code) must use this interpreter, not the system one; pyspark reads
            # the variable when the context starts.
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
            builder = builder.config("spark.driver.extraJavaOptions", driver_java_options(s, ivy))
            jars = cached_jars(ivy)
            if jars:
                builder = builder.config("spark.jars", ",".join(jars))
            else:
                builder = builder.config("spark.jars.ivy", ivy).config("spark.jars.packages", packages_argument())
                resolved_now = True
        elif s.master:
            builder = builder.master(s.master)
        spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(os.environ.get("COOKIE_SPARK_LOG_LEVEL", "ERROR"))
    check_stack(spark)
    if not on_databricks() and not under_spark_submit() and resolved_now:
        mark_resolved(s.ivy_dir or default_ivy_dir())
    return spark


def check_stack(spark: SparkSession) -> None:
    """Prove Sedona's SQL functions and Delta are usable; name the missing jar otherwise.

    Missing jars do not fail at session start (only a WARN is logged), so every later job would
    fail with an opaque Kryo or data-source error. We surface it here instead.
    """
    hint = (
        "Pass the jars to spark-submit with --packages "
        f"{packages_argument()} (spark-submit ignores spark.jars.packages set in code), "
        "or install them as cluster libraries on Databricks."
    )
    jvm = spark.sparkContext._jvm
    assert jvm is not None  # the driver's py4j gateway
    for cls, jar in (
        ("org.apache.sedona.sql.SedonaSqlExtensions", SEDONA_PACKAGE),
        ("io.delta.sql.DeltaSparkSessionExtension", DELTA_PACKAGE if not on_databricks() else "Delta"),
    ):
        try:
            jvm.java.lang.Class.forName(cls, False, jvm.Thread.currentThread().getContextClassLoader())
        except Exception as exc:  # py4j wraps ClassNotFoundException
            raise StackNotLoaded(f"{cls} is not on the classpath: jar {jar} is missing. {hint}") from exc
    from sedona.spark import SedonaContext

    SedonaContext.create(spark)
    try:
        spark.sql("SELECT ST_AsText(ST_Point(1.0, 2.0)) AS p").collect()
    except Exception as exc:
        raise StackNotLoaded(f"Sedona SQL functions are not registered ({SEDONA_PACKAGE}). {hint}") from exc


def _pass_batches(batches: Iterable[Any]) -> Iterator[Any]:
    yield from batches


def start_python_workers(spark: SparkSession) -> Future[None]:
    """Start the executors' Python worker daemon in the background, with one job of one tiny Arrow task.

    A stage that hands rows to Python (``mapInArrow``) otherwise waits in each of its tasks while the daemon
    starts (0.5 s at the points view's join); Spark reuses started workers, and forks more from the running
    daemon in milliseconds. One task, so that it takes one core, not every core a job's own work needs."""
    one = spark.range(1, numPartitions=1)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cookie-python-workers")
    job = pool.submit(inheritable_thread_target(spark)(lambda: one.mapInArrow(_pass_batches, one.schema).collect()))
    pool.shutdown(wait=False)
    return job


def _class_workload(spark: SparkSession, folder: str) -> None:
    """What a job's driver loads, on a few rows: Sedona's functions, reprojection and broadcast join, a
    shuffle with a pivot and a window, Arrow batches to the Python workers, GeoJSON, GeoParquet and a Delta
    table written, appended to, read and described."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    squares = [("a", "POLYGON ((0 0, 2 0, 2 2, 0 2, 0 0))"), ("b", "POLYGON ((2 0, 4 0, 4 2, 2 2, 2 0))")]
    regions = spark.createDataFrame(squares, ["region_id", "wkt"]).select(
        "region_id", F.expr("ST_SubDivideExplode(ST_GeomFromWKT(wkt), 64)").alias("g")
    )
    points = spark.range(10_000).select(
        (F.col("id") % 7).cast("string").alias("c"), F.expr("ST_Point(rand(1) * 4, rand(2) * 2)").alias("p")
    )
    hits = F.broadcast(regions).join(points, F.expr("ST_Intersects(g, p)"))
    counts = hits.groupBy("region_id").pivot("c").count().localCheckpoint()
    counts.mapInArrow(lambda batches: batches, counts.schema).collect()
    counts.withColumn("r", F.row_number().over(Window.orderBy("region_id"))).collect()
    geo = points.limit(100).withColumn("p", F.expr("ST_Transform(p, 'EPSG:4326', 'EPSG:3857')"))
    geo.write.format("geoparquet").save(os.path.join(folder, "points.parquet"))
    spark.read.format("geoparquet").load(os.path.join(folder, "points.parquet")).count()
    geojson = os.path.join(folder, "regions.geojson")
    Path(geojson).write_text(
        '{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {"id": 1}, '
        '"geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}}]}'
    )
    spark.read.format("geojson").option("multiLine", "true").load(geojson).collect()
    table = f"delta.`{os.path.join(folder, 'table')}`"
    counts.writeTo(table).using("delta").createOrReplace()
    counts.writeTo(table).append()
    spark.read.table(table).count()
    spark.sql(f"DESCRIBE HISTORY {table}").collect()


def write_class_archive(path: Path) -> None:
    """Run :func:`_class_workload` in a driver JVM that writes the classes it loaded to ``path`` as it exits.
    Called in a process of its own: a JVM writes its archive only when it ends, and pyspark keeps one per process."""
    import tempfile

    from pyspark import SparkContext

    spark = build_session(
        SparkSettings(app_name="cookie-class-archive", master="local[1]", write_class_archive=str(path))
    )
    with tempfile.TemporaryDirectory() as folder:
        _class_workload(spark, folder)
    spark.stop()
    gateway = SparkContext._gateway
    proc = getattr(gateway, "proc", None)
    if proc is not None and proc.stdin is not None:
        proc.stdin.close()  # the JVM exits on EOF, writing the archive, which takes a few seconds
        proc.wait(timeout=300)


def warm_class_archive(ivy_dir: str) -> Path | None:
    """Write :func:`class_archive` once (an atomic rename of a finished file); None where the JVM could not."""
    import subprocess

    final = class_archive(ivy_dir)
    if final.is_file():
        return final
    tmp = final.with_suffix(f".{os.getpid()}.tmp")
    done = subprocess.run([sys.executable, "-m", "cookie.spark", "--write-class-archive", str(tmp)], check=False)
    if done.returncode != 0 or not tmp.is_file():
        tmp.unlink(missing_ok=True)
        return None
    os.replace(tmp, final)
    for stale in final.parent.glob("cookie-classes-*.jsa"):  # of an earlier JVM or class path: unusable
        if stale != final:
            stale.unlink(missing_ok=True)
    return final


def _main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Spark stack helpers")
    parser.add_argument("--packages", action="store_true", help="print the --packages value for spark-submit")
    parser.add_argument(
        "--warm", action="store_true", help="resolve the jars into the Ivy cache once, and write the class archive"
    )
    parser.add_argument("--write-class-archive", metavar="PATH", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.packages:
        print(packages_argument())
    if args.write_class_archive:
        write_class_archive(Path(args.write_class_archive))
    if args.warm:
        spark = build_session(SparkSettings(app_name="cookie-warm", master="local[1]"))
        import delta  # noqa: F401

        print(f"Sedona and Delta loaded; jars cached in {default_ivy_dir()}")
        spark.stop()
        archive = warm_class_archive(default_ivy_dir())
        print(
            f"driver class archive: {archive}" if archive else "driver class archive: not written (JVM without AppCDS?)"
        )


if __name__ == "__main__":
    _main()
