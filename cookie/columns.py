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
EMBEDDINGS_TABLE = "embeddings"

# Table properties recording what a feature table holds.
FEATURE_NAMES_PROPERTY = "cookie.feature_names"
TABLE_KIND_PROPERTY = "cookie.kind"
