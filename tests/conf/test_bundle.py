"""The Databricks Asset Bundle (databricks.yml + conf/databricks/), checked without a workspace and without Spark.

The bundle is read as the Databricks CLI reads it (includes, target overrides, ``${var.*}`` values) and each job is
checked against the typed job model of the ``databricks-bundles`` package, plus a strict type walk: the model's own
``from_dict`` rejects unknown fields but turns any value into a string and ``"5"`` into an int. Then: the task files
exist, each task's arguments parse with its job's own argument parser and load with the config, the schedule is
valid Quartz, the jars are the ones the local setup resolves, the runtimes run the Spark that ``pyspark`` pins.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import dataclasses
import enum
import importlib.metadata
import io
import re
import subprocess
import sys
import tomllib
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from databricks.bundles.core import Variable
from databricks.bundles.jobs import Job
from packaging.requirements import Requirement

from cookie import spark as cookie_spark
from cookie.cli import build_parser
from cookie.config import load_config
from cookie.storage.tracking import registered_model_name

REPO = Path(__file__).resolve().parents[2]
BUNDLE_FILE = REPO / "databricks.yml"
TARGETS = ("dev", "prod")
PIPELINE = ("features", "train", "evaluate", "promote")
#: Python dependencies the Databricks runtimes provide: installing PyPI pyspark or delta-spark there shadows the
#: runtime's own, and the ML runtime brings the torch build that matches its CUDA.
RUNTIME_PROVIDED = {"pyspark", "delta-spark", "torch"}
#: Databricks Runtime -> Apache Spark major.minor, from the Databricks Runtime release notes.
DBR_SPARK = {"16.4": "3.5", "17.0": "4.0", "17.1": "4.0", "17.2": "4.0", "17.3": "4.0", "18.0": "4.1", "19.0": "4.2"}
#: Placeholders the CLI fills in at deploy time, for loading the config the way a task will.
DEPLOY_VALUES = {
    "${workspace.file_path}": str(REPO),
    "${workspace.current_user.userName}": "someone@example.com",
    "${bundle.target}": "dev",
}

TOP_LEVEL = {
    "bundle",
    "include",
    "variables",
    "targets",
    "resources",
    "workspace",
    "artifacts",
    "sync",
    "permissions",
    "run_as",
    "presets",
    "experimental",
    "python",
    "scripts",
}
TARGET_KEYS = {
    "mode",
    "default",
    "workspace",
    "variables",
    "resources",
    "permissions",
    "run_as",
    "presets",
    "git",
    "bundle",
    "artifacts",
    "sync",
    "cluster_id",
    "compute_id",
}
VARIABLE_KEYS = {"description", "default", "type", "lookup"}
REFERENCE = re.compile(r"\$\{([A-Za-z_][\w.\-\[\]]*)\}")


# --------------------------------------------------------------------------- reading the bundle


class _UniqueKeyLoader(yaml.SafeLoader):
    """A key given twice in one mapping is an error (YAML would keep the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> dict[str, Any]:
    data = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)
    assert isinstance(data, dict), f"{path}: not a mapping"
    return data


@dataclasses.dataclass
class Bundle:
    root: dict[str, Any]
    files: dict[Path, dict[str, Any]]  # every YAML file of the bundle, databricks.yml first
    job_files: dict[str, Path]  # job key -> the file that defines it (paths in a job are relative to it)

    def variables(self, target: str) -> dict[str, Any]:
        values = {name: spec.get("default") for name, spec in self.root.get("variables", {}).items()}
        values.update(self.root["targets"][target].get("variables") or {})
        return values

    def resources(self, target: str) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for data in self.files.values():
            merged = merge(merged, data.get("resources") or {})
        return merge(merged, self.root["targets"][target].get("resources") or {})

    def job(self, key: str, target: str) -> dict[str, Any]:
        """The job as deployed to ``target``: target overrides applied and every ``${var.*}`` replaced."""
        return resolve(self.resources(target)["jobs"][key], self.variables(target))


def load_bundle() -> Bundle:
    root = read_yaml(BUNDLE_FILE)
    files = {BUNDLE_FILE: root}
    for pattern in root.get("include", []):
        matched = sorted(REPO.glob(pattern))
        assert matched, f"include {pattern!r} matches no file"
        for path in matched:
            files[path] = read_yaml(path)
    job_files: dict[str, Path] = {}
    for path, data in files.items():
        for key in (data.get("resources") or {}).get("jobs", {}):
            assert key not in job_files, f"job {key} is defined in {job_files[key]} and in {path}"
            job_files[key] = path
    return Bundle(root, files, job_files)


_KEYED_LISTS = {"tasks": "task_key", "job_clusters": "job_cluster_key"}


def merge(base: Any, override: Any, key: str = "") -> Any:
    """How the CLI applies a target's overrides: mappings merge, tasks and job clusters merge by their key."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for k, v in override.items():
            out[k] = merge(base[k], v, k) if k in base else copy.deepcopy(v)
        return out
    if key in _KEYED_LISTS and isinstance(base, list) and isinstance(override, list):
        id_key = _KEYED_LISTS[key]
        out_list = [copy.deepcopy(item) for item in base]
        index = {item[id_key]: i for i, item in enumerate(out_list)}
        for item in override:
            if item[id_key] in index:
                out_list[index[item[id_key]]] = merge(out_list[index[item[id_key]]], item)
            else:
                out_list.append(copy.deepcopy(item))
        return out_list
    return copy.deepcopy(override)


def resolve(value: Any, variables: dict[str, Any]) -> Any:
    """Replace ``${var.name}``: a whole-string reference takes the variable's value (a number, a list), a reference
    inside a string is interpolated; other references (``${workspace.*}``, ``${bundle.*}``) stay for the CLI."""
    if isinstance(value, dict):
        return {k: resolve(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, variables) for v in value]
    if not isinstance(value, str):
        return value
    for _ in range(10):  # a variable's value may refer to another variable
        whole = re.fullmatch(r"\$\{var\.([\w\-]+)\}", value)
        if whole:
            new = variables[whole.group(1)]
            if not isinstance(new, str):
                return copy.deepcopy(new)
        else:
            new = re.sub(r"\$\{var\.([\w\-]+)\}", lambda m: str(variables[m.group(1)]), value)
        if new == value:
            return value
        value = new
    raise AssertionError(f"variables refer to each other in a loop: {value}")


def var_references(data: Any) -> set[str]:
    text = yaml.safe_dump(data)
    return {ref.split(".", 1)[1] for ref in REFERENCE.findall(text) if ref.startswith("var.")}


def fill_deploy_values(text: str) -> str:
    for placeholder, value in DEPLOY_VALUES.items():
        text = text.replace(placeholder, value)
    assert "${" not in text, f"unresolved reference in {text!r}"
    return text


# --------------------------------------------------------------------------- a strict walk over the typed model


def _is_reference(value: Any) -> bool:
    return isinstance(value, str) and REFERENCE.fullmatch(value) is not None


def type_errors(tp: Any, value: Any, where: str) -> list[str]:
    """Where ``value`` does not have the type the ``databricks-bundles`` model declares: unknown fields, missing
    required fields, and wrong types that the model's own ``from_dict`` would coerce (``str(...)``, ``int("5")``)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return []
    if origin is typing.Union:
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return []
        if _is_reference(value) and any(typing.get_origin(a) is Variable for a in args):
            return []
        first: list[str] | None = None
        for arg in args:
            if arg is type(None) or typing.get_origin(arg) is Variable:
                continue
            errors = type_errors(arg, value, where)
            if not errors:
                return []
            first = first if first is not None else errors
        return first or [f"{where}: {value!r} is not allowed here"]
    if origin is list:
        if not isinstance(value, list):
            return [f"{where}: expected a list, got {value!r}"]
        (item,) = typing.get_args(tp)
        return [e for i, v in enumerate(value) for e in type_errors(item, v, f"{where}[{i}]")]
    if origin is dict:
        if not isinstance(value, dict):
            return [f"{where}: expected a mapping, got {value!r}"]
        _, item = typing.get_args(tp)
        out = [f"{where}: key {k!r} is not a string" for k in value if not isinstance(k, str)]
        return out + [e for k, v in value.items() for e in type_errors(item, v, f"{where}.{k}")]
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            return [f"{where}: expected a mapping ({tp.__name__}), got {value!r}"]
        hints = typing.get_type_hints(tp)
        fields = {f.name: f for f in dataclasses.fields(tp)}
        out = [f"{where}: unknown field {k!r} for {tp.__name__}" for k in value if k not in fields]
        out += [
            f"{where}: required field {name!r} of {tp.__name__} is missing"
            for name, f in fields.items()
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and name not in value
        ]
        return out + [e for k, v in value.items() if k in fields for e in type_errors(hints[k], v, f"{where}.{k}")]
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        allowed = [m.value for m in tp]
        return [] if value in allowed else [f"{where}: {value!r} is not one of {allowed}"]
    if tp is bool:
        return [] if isinstance(value, bool) else [f"{where}: expected true/false, got {value!r}"]
    if tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return [] if ok else [f"{where}: expected an integer, got {value!r}"]
    if tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return [] if ok else [f"{where}: expected a number, got {value!r}"]
    if tp is str:
        return [] if isinstance(value, str) else [f"{where}: expected a string, got {value!r}"]
    return [f"{where}: no check for type {tp!r}"]


def job_errors(job: dict[str, Any], where: str = "job") -> list[str]:
    """Both checks: the model's ``from_dict`` (unknown fields, values it cannot convert) and the strict walk."""
    try:
        Job.from_dict(copy.deepcopy(job))  # type: ignore[arg-type]
    except (ValueError, TypeError) as exc:
        return [f"{where}: Job.from_dict: {exc}"]
    return type_errors(Job, job, where)


# --------------------------------------------------------------------------- Quartz cron

_MONTHS = {
    m: i + 1 for i, m in enumerate(["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"])
}
_DAYS = {d: i + 1 for i, d in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])}
_QUARTZ_FIELDS = (
    ("seconds", 0, 59, {}),
    ("minutes", 0, 59, {}),
    ("hours", 0, 23, {}),
    ("day-of-month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day-of-week", 1, 7, _DAYS),
    ("year", 1970, 2099, {}),
)


def _quartz_value(text: str, lo: int, hi: int, names: dict[str, int]) -> int | None:
    value = names.get(text) if text in names else int(text) if text.isdigit() else None
    return value if value is not None and lo <= value <= hi else None


def _quartz_field_errors(text: str, name: str, lo: int, hi: int, names: dict[str, int]) -> list[str]:
    bad = [f"{name} {text!r}: expected values {lo}-{hi}{' or names' if names else ''}, ',', '-', '/', '*'"]
    if text == "?":
        return [] if name in ("day-of-month", "day-of-week") else [f"{name}: '?' only in day-of-month or day-of-week"]
    if name == "day-of-month" and (
        text in ("L", "LW")
        or re.fullmatch(r"L-([1-9]|[12]\d|30)", text)
        or (text.endswith("W") and _quartz_value(text[:-1], 1, 31, {}) is not None)
    ):
        return []
    if name == "day-of-week":
        if text == "L" or (text.endswith("L") and _quartz_value(text[:-1], 1, 7, _DAYS) is not None):
            return []
        if "#" in text:
            day, _, nth = text.partition("#")
            ok = _quartz_value(day, 1, 7, _DAYS) is not None and nth in ("1", "2", "3", "4", "5")
            return [] if ok else bad
    for item in text.split(","):
        base, slash, step = item.partition("/")
        if slash and not (step.isdigit() and 1 <= int(step) <= hi):
            return bad
        if base == "*":
            continue
        start, dash, end = base.partition("-")
        if _quartz_value(start, lo, hi, names) is None:
            return bad
        if dash and _quartz_value(end, lo, hi, names) is None:  # Quartz ranges may wrap (FRI-MON, 22-2)
            return bad
    return []


def quartz_errors(expression: str) -> list[str]:
    """What is wrong with a Quartz cron expression (an empty list when it is valid): six or seven fields, seconds
    minutes hours day-of-month month day-of-week [year], each in its range, and exactly one of day-of-month and
    day-of-week given as '?' (Quartz supports no schedule that constrains both)."""
    parts = expression.upper().split()
    if len(parts) not in (6, 7):
        return [f"{len(parts)} fields: Quartz has 6 (sec min hour day-of-month month day-of-week) or 7 (+ year)"]
    errors = [e for part, spec in zip(parts, _QUARTZ_FIELDS) for e in _quartz_field_errors(part, *spec)]
    if (parts[3] == "?") == (parts[5] == "?"):
        errors.append("exactly one of day-of-month and day-of-week must be '?'")
    return errors


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def bundle() -> Bundle:
    return load_bundle()


def pipeline_tasks(bundle: Bundle, target: str = "dev") -> list[dict[str, Any]]:
    tasks: list[dict[str, Any]] = bundle.job("cookie_pipeline", target)["tasks"]
    return tasks


def job_verb(script: Path) -> str:
    """The verb a ``jobs/*.py`` file runs: the string passed to ``run_verb`` (read, not executed)."""
    calls = [
        node.args[0].value
        for node in ast.walk(ast.parse(script.read_text()))
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", None) == "run_verb"
        and node.args
        and isinstance(node.args[0], ast.Constant)
    ]
    assert len(calls) == 1, f"{script}: expected one run_verb('<verb>') call, found {calls}"
    return str(calls[0])


def task_script(bundle: Bundle, task: dict[str, Any]) -> Path:
    base = bundle.job_files["cookie_pipeline"].parent
    return (base / task["spark_python_task"]["python_file"]).resolve()


# --------------------------------------------------------------------------- the bundle's shape


def test_bundle_yaml_parses_with_known_sections(bundle: Bundle) -> None:
    assert bundle.root["bundle"]["name"] == "cookie"
    for path, data in bundle.files.items():
        assert set(data) <= TOP_LEVEL, f"{path}: unknown top-level keys {sorted(set(data) - TOP_LEVEL)}"
    assert set(bundle.root["targets"]) == set(TARGETS)
    for name, target in bundle.root["targets"].items():
        assert set(target) <= TARGET_KEYS, f"target {name}: unknown keys {sorted(set(target) - TARGET_KEYS)}"
    assert bundle.root["targets"]["dev"]["mode"] == "development"
    assert bundle.root["targets"]["dev"]["default"] is True
    prod = bundle.root["targets"]["prod"]
    assert prod["mode"] == "production"
    # Production mode wants one copy per workspace: an explicit root path (or a service principal).
    assert prod["workspace"]["root_path"].startswith("/Workspace/")
    assert list(bundle.job_files) == ["cookie_pipeline"]


def test_every_variable_is_described_declared_and_used(bundle: Bundle) -> None:
    declared = bundle.root["variables"]
    for name, spec in declared.items():
        assert set(spec) <= VARIABLE_KEYS, f"variable {name}: unknown keys {sorted(set(spec) - VARIABLE_KEYS)}"
        assert spec.get("description"), f"variable {name} has no description"
        assert "default" in spec, f"variable {name} has no default: every deploy would have to pass it"
    used = set().union(*(var_references(data) for data in bundle.files.values()))
    assert used <= set(declared), f"undeclared variables: {sorted(used - set(declared))}"
    assert set(declared) <= used, f"variables nothing uses: {sorted(set(declared) - used)}"
    for target in TARGETS:
        overridden = set(bundle.root["targets"][target].get("variables") or {})
        assert overridden <= set(declared), f"target {target} sets undeclared variables {overridden - set(declared)}"


@pytest.mark.parametrize("target", TARGETS)
def test_job_validates_against_the_typed_job_model(bundle: Bundle, target: str) -> None:
    for key in bundle.job_files:
        raw = bundle.resources(target)["jobs"][key]
        assert job_errors(raw, f"{key} (as written)") == []
        assert job_errors(bundle.job(key, target), f"{key} ({target}, variables set)") == []


def test_the_job_check_refuses_unknown_fields_and_wrong_types(bundle: Bundle) -> None:
    job = bundle.job("cookie_pipeline", "dev")

    def changed(edit: Any) -> dict[str, Any]:
        j = copy.deepcopy(job)
        edit(j)
        return j

    unknown_top = changed(lambda j: j.update(max_concurent_runs=1))
    unknown_task = changed(lambda j: j["tasks"][0]["spark_python_task"].update(pyhton_file="x.py"))
    assert any("max_concurent_runs" in e for e in job_errors(unknown_top))
    assert any("pyhton_file" in e for e in job_errors(unknown_task))

    wrong_types = {
        "max_concurrent_runs as a string": lambda j: j.update(max_concurrent_runs="1"),
        "name as a list": lambda j: j.update(name=["cookie"]),
        "parameters as one string": lambda j: j["tasks"][0]["spark_python_task"].update(parameters="--config x"),
        "num_workers as words": lambda j: j["job_clusters"][0]["new_cluster"].update(num_workers="two"),
        "unknown access mode": lambda j: j["job_clusters"][0]["new_cluster"].update(data_security_mode="SHARED"),
        "python_file missing": lambda j: j["tasks"][0]["spark_python_task"].pop("python_file"),
    }
    for what, edit in wrong_types.items():
        assert job_errors(changed(edit)), f"not refused: {what}"
    # Why the strict walk exists: the model alone turns these into a string and an int.
    Job.from_dict(changed(wrong_types["name as a list"]))  # type: ignore[arg-type]
    Job.from_dict(changed(wrong_types["max_concurrent_runs as a string"]))  # type: ignore[arg-type]


def test_tasks_run_features_train_evaluate_promote_in_a_chain(bundle: Bundle) -> None:
    job = bundle.job("cookie_pipeline", "dev")
    tasks = job["tasks"]
    assert [t["task_key"] for t in tasks] == list(PIPELINE)
    for previous, task in zip([None, *PIPELINE], tasks):
        deps = [d["task_key"] for d in task.get("depends_on", [])]
        assert deps == ([previous] if previous else []), f"{task['task_key']} depends on {deps}"
    clusters = {c["job_cluster_key"] for c in job["job_clusters"]}
    used = {t["job_cluster_key"] for t in tasks}
    assert used == clusters, f"clusters without tasks: {clusters - used}; unknown clusters: {used - clusters}"
    assert job["max_concurrent_runs"] == 1  # two runs at once would race on the tables and the aliases


def test_every_task_file_exists_and_runs_its_own_verb(bundle: Bundle) -> None:
    for task in pipeline_tasks(bundle):
        assert set(task) & {"spark_python_task"}, f"{task['task_key']} is not a spark_python_task"
        script = task_script(bundle, task)
        assert script.is_file(), f"{task['task_key']}: {script} does not exist"
        assert script.parent == REPO / "jobs", f"{task['task_key']}: {script} is not one of jobs/*.py"
        assert job_verb(script) == task["task_key"]
        for lib in task["libraries"]:
            if "requirements" in lib:
                req = (bundle.job_files["cookie_pipeline"].parent / lib["requirements"]).resolve()
                assert req.is_file(), f"{task['task_key']}: {req} does not exist"


def test_every_task_parses_with_its_job_parser(bundle: Bundle) -> None:
    for task in pipeline_tasks(bundle):
        verb = job_verb(task_script(bundle, task))
        params = task["spark_python_task"]["parameters"]
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            try:
                args = build_parser().parse_args([verb, *params])
            except SystemExit:
                pytest.fail(f"{task['task_key']}: jobs' parser refuses {params}: {err.getvalue()}")
        assert args.verb == verb
        assert args.config.endswith(".yaml")


@pytest.mark.parametrize("target", TARGETS)
def test_every_task_loads_the_same_config_with_the_same_overrides(bundle: Bundle, target: str) -> None:
    params = [t["spark_python_task"]["parameters"] for t in pipeline_tasks(bundle, target)]
    assert all(p == params[0] for p in params), "every verb must see the same config, names and folders"
    args = build_parser().parse_args(["train", *params[0]])
    config = Path(fill_deploy_values(args.config))
    assert config.is_file(), f"--config {args.config} is not a file of the repository"
    variables = bundle.variables(target)
    for name in sorted(p.stem for p in (REPO / "conf").glob("*.yaml")):  # the config variable may name any
        path = REPO / "conf" / f"{name}.yaml"
        cfg = load_config(path, base_dir=str(REPO), overrides=[fill_deploy_values(s) for s in args.set])
        catalog = f"{variables['catalog']}.{variables['schema']}"
        assert cfg.output.catalog == catalog
        assert registered_model_name(cfg).startswith(catalog + ".")
        assert cfg.train.tracking_uri == "databricks" and cfg.train.registry_uri == "databricks-uc"
        assert cfg.train.use_gpu is True and cfg.train.local_mode is False
        assert cfg.train.num_processes == variables["train_workers"]
        assert (cfg.train.experiment_name or "").startswith("/Users/")  # Databricks experiments are paths
        volume = f"/Volumes/{variables['catalog']}/{variables['schema']}/{variables['volume']}/"
        for folder in (cfg.output.warehouse, cfg.train.checkpoint_dir, cfg.evaluation.report_dir):
            assert folder.startswith(volume), f"{folder} is not in the volume {volume}"


def test_job_scripts_import_the_package_from_the_repository(tmp_path: Path, bundle: Bundle) -> None:
    # Databricks runs jobs/*.py from a synced copy where the package is not installed: python -S (no
    # site-packages, so no installed cookie) from another folder still finds cookie next to jobs/.
    for task in pipeline_tasks(bundle):
        script = task_script(bundle, task)
        res = subprocess.run(
            [sys.executable, "-S", str(script), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60
        )
        assert res.returncode == 0, f"{script.name}: {res.stderr}"
        assert f"python -m cookie {task['task_key']}" in res.stdout


# --------------------------------------------------------------------------- clusters, libraries, runtimes


def clusters(bundle: Bundle, target: str = "dev") -> dict[str, dict[str, Any]]:
    job = bundle.job("cookie_pipeline", target)
    return {c["job_cluster_key"]: c["new_cluster"] for c in job["job_clusters"]}


def task_cluster(bundle: Bundle, task_key: str) -> dict[str, Any]:
    (task,) = [t for t in pipeline_tasks(bundle) if t["task_key"] == task_key]
    return clusters(bundle)[task["job_cluster_key"]]


def test_runtimes_run_the_spark_that_pyspark_pins() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    (pin,) = [Requirement(d) for d in project["dependencies"] if Requirement(d).name == "pyspark"]
    (spec,) = pin.specifier
    assert spec.operator == "=="
    pinned = ".".join(spec.version.split(".")[:2])
    assert pinned == cookie_spark.SPARK_MINOR
    for key, cluster in clusters(load_bundle()).items():
        m = re.fullmatch(r"(\d+\.\d+)\.x-(?:(cpu|gpu)-ml-)?scala(\d+\.\d+)", cluster["spark_version"])
        assert m, f"{key}: unexpected runtime {cluster['spark_version']!r}"
        dbr, _, scala = m.groups()
        assert dbr in DBR_SPARK, f"{key}: Databricks Runtime {dbr} is not in the table of Spark versions"
        assert DBR_SPARK[dbr] == pinned, f"{key}: DBR {dbr} runs Spark {DBR_SPARK[dbr]}, pyspark is pinned to {pin}"
        assert scala == cookie_spark.SCALA


def test_training_runs_on_gpu_workers_of_the_ml_runtime(bundle: Bundle) -> None:
    etl, gpu = task_cluster(bundle, "features"), task_cluster(bundle, "train")
    assert "-gpu-ml-" in gpu["spark_version"]
    assert "-ml-" not in etl["spark_version"]  # the ETL needs no ML libraries
    assert etl["spark_version"].split(".x-")[0] == gpu["spark_version"].split(".x-")[0]
    # TorchDistributor(local_mode=False, use_gpu=True): one process per Spark task, a GPU each.
    assert gpu["spark_conf"]["spark.task.resource.gpu.amount"] == "1"
    args = build_parser().parse_args(["train", *pipeline_tasks(bundle)[1]["spark_python_task"]["parameters"]])
    assert f"train.num_processes={gpu['num_workers']}" in args.set
    for cluster in (etl, gpu):
        assert cluster["runtime_engine"] == "STANDARD"  # Photon off: Sedona functions run on the JVM
        assert cluster["data_security_mode"] == "SINGLE_USER"  # dedicated: cluster jars load under Unity Catalog


def test_maven_libraries_are_the_coordinates_spark_py_resolves(bundle: Bundle) -> None:
    expected = {cookie_spark.SEDONA_PACKAGE, cookie_spark.GEOTOOLS_WRAPPER}
    for task in pipeline_tasks(bundle):
        maven = {lib["maven"]["coordinates"] for lib in task["libraries"] if "maven" in lib}
        # Delta is built into the runtime: adding its jar would load a second Delta.
        assert maven == expected, f"{task['task_key']}: {sorted(maven)} != {sorted(expected)}"
        pypi = {Requirement(lib["pypi"]["package"]).name for lib in task["libraries"] if "pypi" in lib}
        assert not pypi & RUNTIME_PROVIDED


def read_requirements(path: Path) -> dict[str, Requirement]:
    lines = [ln.split("#", 1)[0].strip() for ln in path.read_text().splitlines()]
    reqs = [Requirement(ln) for ln in lines if ln]
    return {r.name.lower(): r for r in reqs}


def test_requirements_are_pyprojects_dependencies_less_what_the_runtime_provides() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    deps = {r.name.lower(): r for r in map(Requirement, project["dependencies"])}
    reqs = read_requirements(REPO / "conf" / "databricks" / "requirements.txt")
    assert set(reqs) == set(deps) - RUNTIME_PROVIDED
    for name, req in reqs.items():
        assert req.specifier == deps[name].specifier, f"{name}: {req.specifier} != pyproject's {deps[name].specifier}"


def test_requirements_pull_in_no_pyspark_or_delta_spark() -> None:
    """Walk the installed metadata of every requirement: none of them depends on pyspark or delta-spark."""
    seen: dict[str, list[str]] = {}
    todo = [(name, [name]) for name in read_requirements(REPO / "conf" / "databricks" / "requirements.txt")]
    while todo:
        name, chain = todo.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in seen:
            continue
        seen[key] = chain
        try:
            requires = importlib.metadata.requires(key) or []
        except importlib.metadata.PackageNotFoundError:
            continue  # not installed here (a platform-specific dependency): nothing to follow
        for text in requires:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append((req.name, [*chain, req.name]))
    for banned in ("pyspark", "delta-spark"):
        assert banned not in seen, f"{' -> '.join(seen[banned])} would install PyPI {banned} over the runtime's"


# --------------------------------------------------------------------------- schedule and notifications


def test_schedule_is_valid_quartz_and_paused_in_dev(bundle: Bundle) -> None:
    for target in TARGETS:
        schedule = bundle.job("cookie_pipeline", target)["schedule"]
        assert quartz_errors(schedule["quartz_cron_expression"]) == []
        # A number in the seconds field: one run per matching minute, never one per second.
        assert schedule["quartz_cron_expression"].split()[0].isdigit()
        assert schedule["timezone_id"] == "UTC"
    assert bundle.job("cookie_pipeline", "dev")["schedule"]["pause_status"] == "PAUSED"
    assert bundle.job("cookie_pipeline", "prod")["schedule"]["pause_status"] == "UNPAUSED"


@pytest.mark.parametrize(
    "expression",
    [
        "0 0 3 ? * SUN",
        "0 0 12 * * ?",
        "0 15 10 ? * MON-FRI",
        "0 0/5 14,18 * * ?",
        "0 15 10 L * ?",
        "0 15 10 ? * 6L",
        "0 15 10 ? * 6#3",
        "0 0 12 1/5 * ?",
        "0 11 11 11 11 ?",
        "0 0 22-2 ? * FRI-MON",
        "0 15 10 ? * 6L 2026-2030",
        "0 0 12 LW * ?",
        "0 0 12 15W * ?",
        "0 0 4 ? jan,jul mon",
    ],
)
def test_quartz_validator_accepts(expression: str) -> None:
    assert quartz_errors(expression) == []


@pytest.mark.parametrize(
    "expression",
    [
        "0 3 * * 0",  # Unix cron: five fields
        "0 0 3 * * SUN",  # both day fields constrained
        "0 0 3 ? * ?",  # neither
        "60 0 3 ? * SUN",
        "0 0 24 ? * SUN",
        "0 0 3 32 * ?",
        "0 0 3 ? 13 SUN",
        "0 0 3 ? * 8",
        "0 0 3 ? * SUN#6",
        "0 0/0 3 ? * SUN",
        "0 ? 3 ? * SUN",
        "0 0 3 ? * SUN 1969",
        "0 0 3 ? * FUN",
        "0 0 3 ? * SUN 2026 1",
    ],
)
def test_quartz_validator_refuses(expression: str) -> None:
    assert quartz_errors(expression)


def test_failures_are_mailed_and_sent_to_the_webhooks_of_the_variables(bundle: Bundle) -> None:
    raw = bundle.resources("prod")["jobs"]["cookie_pipeline"]
    assert raw["email_notifications"]["on_failure"] == ["${var.failure_email}"]
    assert raw["webhook_notifications"]["on_failure"] == "${var.failure_webhooks}"
    job = bundle.job("cookie_pipeline", "prod")
    assert job["email_notifications"]["on_failure"] == ["${workspace.current_user.userName}"]
    assert job["webhook_notifications"]["on_failure"] == []
    with_hook = resolve(raw, {**bundle.variables("prod"), "failure_webhooks": [{"id": "a-destination"}]})
    assert job_errors(with_hook) == []


def test_readme_documents_the_commands_and_every_variable(bundle: Bundle) -> None:
    readme = (REPO / "README.md").read_text()
    m = re.search(r"^## On Databricks\n(.*?)(?=^## )", readme, flags=re.S | re.M)
    assert m, "README has no '## On Databricks' section"
    section = m.group(1)
    for command in (
        "databricks bundle validate",
        "databricks bundle deploy -t dev",
        "databricks bundle run cookie_pipeline -t dev",
    ):
        assert command in section
    for name in bundle.root["variables"]:
        assert f"`{name}`" in section, f"variable {name} is not described in README's On Databricks section"
