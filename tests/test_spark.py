"""The driver JVM's options: the throughput collector unless the config names one, the class archive (AppCDS) where
``--warm`` left one, written on request; never replacing what the config asks for."""

from __future__ import annotations

from pathlib import Path

import pytest

from cookie.spark import DEFAULT_GC, QUIET_CDS, SparkSettings, class_archive, default_ivy_dir, driver_java_options


def test_no_archive_leaves_the_configs_options(tmp_path: Path) -> None:
    assert driver_java_options(SparkSettings(), str(tmp_path)) == DEFAULT_GC
    own = SparkSettings(extra_conf=(("spark.driver.extraJavaOptions", "-Dx=1"),))
    assert driver_java_options(own, str(tmp_path)) == f"-Dx=1 {DEFAULT_GC}"


def test_a_collector_the_config_names_is_kept(tmp_path: Path) -> None:
    """Two collectors stop the JVM from starting: the config's choice wins."""
    own = SparkSettings(extra_conf=(("spark.driver.extraJavaOptions", "-Xss4m -XX:+UseG1GC"),))
    assert driver_java_options(own, str(tmp_path)) == "-Xss4m -XX:+UseG1GC"


def test_an_archive_is_used_after_the_configs_options(tmp_path: Path) -> None:
    archive = class_archive(str(tmp_path))
    archive.write_bytes(b"")
    own = SparkSettings(extra_conf=(("spark.driver.extraJavaOptions", "-Dx=1"),))
    assert driver_java_options(own, str(tmp_path)) == " ".join(
        ["-Dx=1", DEFAULT_GC, f"-XX:SharedArchiveFile={archive}", *QUIET_CDS]
    )


def test_writing_an_archive_never_reads_one(tmp_path: Path) -> None:
    class_archive(str(tmp_path)).write_bytes(b"")
    out = tmp_path / "new.jsa"
    opts = driver_java_options(SparkSettings(write_class_archive=str(out)), str(tmp_path))
    assert opts == " ".join([DEFAULT_GC, f"-XX:ArchiveClassesAtExit={out}", *QUIET_CDS])


def test_the_archive_is_named_for_the_jvm_and_the_packages(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("JAVA_HOME", "/opt/jdk-17")
    a = class_archive(str(tmp_path))
    monkeypatch.setenv("JAVA_HOME", "/opt/jdk-21")
    b = class_archive(str(tmp_path))
    assert a.parent == b.parent == tmp_path and a.suffix == ".jsa" and a != b


@pytest.mark.spark
def test_the_driver_jvm_maps_the_warm_archive(spark) -> None:
    """After ``make setup`` (``--warm``) the session's JVM was started with the archive, and mapped it (a JVM
    that cannot use an archive ignores it silently: the file then is not in the process's memory maps)."""
    archive = class_archive(default_ivy_dir())
    if not archive.is_file():
        pytest.skip(f"no class archive at {archive}: run python -m cookie.spark --warm")
    jvm = spark.sparkContext._jvm
    args = list(jvm.java.lang.management.ManagementFactory.getRuntimeMXBean().getInputArguments())
    assert f"-XX:SharedArchiveFile={archive}" in args and DEFAULT_GC in args
    maps = Path(f"/proc/{jvm.java.lang.management.ManagementFactory.getRuntimeMXBean().getPid()}/maps")
    if maps.is_file():  # Linux
        assert str(archive.resolve()) in maps.read_text()  # the maps name the file behind any link (.ci/run's .ivy2)
