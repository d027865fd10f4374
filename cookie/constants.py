"""Column and table names shared across modules.

Every table the ETL writes is keyed by ``REGION_ID``; geometry crosses table boundaries as WKB
(Delta has no geometry type, and external readers must not see a Sedona UDT).
"""

REGION_ID = "region_id"
GEOMETRY = "geometry"  # Sedona geometry column inside a DataFrame
GEOMETRY_WKB = "geometry_wkb"  # the same geometry as ISO WKB when stored in Delta
AREA_KM2 = "area_km2"
CENTROID_LON = "centroid_lon"
CENTROID_LAT = "centroid_lat"
H3_CELL = "h3_cell"

# Inputs of the view transforms, after the readers have normalised them.
CATEGORY = "category"
WEIGHT = "weight"
ORIGIN_REGION = "origin_region_id"
DESTINATION_REGION = "destination_region_id"
ORIGIN_GEOMETRY = "origin_geometry"
DESTINATION_GEOMETRY = "destination_geometry"
TRIPS = "trips"

# Table names under a warehouse.
REGIONS_TABLE = "regions"
VIEW_PREFIX = "view_"
LABEL_PREFIX = "label_"
RUNS_TABLE = "etl_runs"
RUN_SNAPSHOT_COLUMN = "snapshot"  # etl_runs: JSON {table: Delta version} of the complete run (the manifest)
EMBEDDINGS_TABLE = "embeddings"

# Table properties recording what a feature table holds.
FEATURE_NAMES_PROPERTY = "cookie.feature_names"
TABLE_KIND_PROPERTY = "cookie.kind"
#: a view table's view config (canonical JSON, :meth:`cookie.config.project.ViewConfig.spec`): training refuses
#: tables built from another one (stale after an edit of the config) instead of training on them silently
VIEW_CONFIG_PROPERTY = "cookie.view_config"

# Columns of the ``embeddings`` table (cookie.serving.embeddings).
MODEL_NAME = "model_name"
MODEL_VERSION = "model_version"
RUN_ID = "run_id"
CREATED_AT = "created_at"
EMBEDDING = "embedding"
REGION_ORDER = "region_order"  # position of the region in the regions table's id order

# The ETL's mask column in every view/label table: the region had data for this view.
PRESENT = "_present"
# Flat (pyfunc / Spark) feature columns: ``<view>__<feature>`` and ``<view>___present``.
FEATURE_SEP = "__"
PRESENT_SUFFIX = "___present"

# Spatial context columns appended by the ETL: ``<prefix>__<feature>`` per region graph.
CONTEXT_PREFIX = {"adjacency": "ctx_adj", "flows": "ctx_flows"}

# Exit codes of every job and CLI verb (README "Exit codes").
EXIT_OK = 0
EXIT_BAD_INPUT = 1  # bad input data (file, column, region named)
EXIT_BAD_CONFIG = 2  # bad config or command-line arguments
EXIT_STACK = 3  # Sedona or Delta jars missing from the JVM
EXIT_MISSING = 4  # a table, model version or alias that does not exist yet (run the job that makes it)
EXIT_CONFLICT = 5  # another run committed to the same table meanwhile (let it finish, rerun)
EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_BAD_INPUT: "bad input data",
    EXIT_BAD_CONFIG: "bad config or arguments",
    EXIT_STACK: "Sedona or Delta jars missing",
    EXIT_MISSING: "table or model missing: run the job that makes it",
    EXIT_CONFLICT: "another run wrote the same table meanwhile: rerun after it",
}
