"""OpenStreetMap .osm.pbf to GeoParquet layers, then read with Sedona.

Sedona's ``osmpbf`` reader (1.8.0, the newest served on Maven Central here) returned only the nodes
of the Helsinki extract and none of its 5,130 ways, and it does not assemble multipolygons. So the
PBF is converted once with libosmium (pyosmium), which streams the file, keeps node locations in an
index and assembles areas from ways and multipolygon relations, into one GeoParquet file per layer.
The layers are what the views need: ``pois`` (points), ``roads`` (lines), ``buildings``,
``landuse`` and ``green`` (polygons). On a cluster run the conversion as its own step
(``jobs/osm_to_geoparquet.py``) and point the config at the GeoParquet folder: everything after it
is distributed Sedona.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

LAYERS = ("pois", "roads", "buildings", "landuse", "green")

POI_KEYS = (
    "amenity",
    "shop",
    "tourism",
    "leisure",
    "office",
    "craft",
    "healthcare",
    "historic",
    "public_transport",
    "sport",
)
GREEN = {
    "leisure": {"park", "garden", "nature_reserve", "dog_park"},
    "landuse": {
        "grass",
        "forest",
        "meadow",
        "recreation_ground",
        "village_green",
        "allotments",
        "cemetery",
        "orchard",
        "flowerbed",
    },
    "natural": {"wood", "scrub", "grassland", "heath", "wetland"},
}
LAYER_GEOMETRY = {
    "pois": "Point",
    "roads": "LineString",
    "buildings": "MultiPolygon",
    "landuse": "MultiPolygon",
    "green": "MultiPolygon",
}
_BATCH = 50_000

if TYPE_CHECKING:
    from osmium.osm import TagList


def _poi_category(tags: TagList) -> str | None:
    for key in POI_KEYS:
        value = tags.get(key)
        if value:
            return f"{key}={value}"
    return None


def _green_category(tags: TagList) -> str | None:
    for key, values in GREEN.items():
        if tags.get(key) in values:
            return "green"
    return None


class _LayerWriter:
    """Buffered GeoParquet writer: (osm_id, category, geometry_wkb) with GeoParquet 1.0 metadata."""

    def __init__(self, path: Path, geometry_type: str):
        self.path = path
        self.rows: dict[str, list[Any]] = {"osm_id": [], "category": [], "geometry": []}
        geo = {
            "version": "1.0.0",
            "primary_column": "geometry",
            "columns": {"geometry": {"encoding": "WKB", "geometry_types": [geometry_type], "crs": None}},
        }  # crs null means OGC:CRS84 (lon/lat)
        self.schema = pa.schema(
            [("osm_id", pa.string()), ("category", pa.string()), ("geometry", pa.binary())],
            metadata={b"geo": json.dumps(geo).encode()},
        )
        self.writer = pq.ParquetWriter(str(path), self.schema)
        self.count = 0

    def add(self, osm_id: str, category: str, wkb_hex: str) -> None:
        self.rows["osm_id"].append(osm_id)
        self.rows["category"].append(category)
        self.rows["geometry"].append(bytes.fromhex(wkb_hex))
        self.count += 1
        if len(self.rows["osm_id"]) >= _BATCH:
            self.flush()

    def flush(self) -> None:
        if self.rows["osm_id"]:
            self.writer.write_table(pa.table(self.rows, schema=self.schema))
            self.rows = {k: [] for k in self.rows}

    def close(self) -> None:
        self.flush()
        self.writer.close()


def pbf_fingerprint(pbf_path: str) -> str:
    h = hashlib.sha256()
    with open(pbf_path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def convert_pbf(pbf_path: str, out_dir: str) -> dict[str, int]:
    """Convert a PBF into ``<out_dir>/<layer>.parquet``; return rows per layer.

    Written into a temporary folder and renamed at the end, so a crash never leaves a
    half-converted cache that a later run would trust.
    """
    import osmium
    from osmium.osm import Area, Node, Way
    from shapely import wkb as shp_wkb

    if not os.path.isfile(pbf_path):
        raise FileNotFoundError(f"OSM file not found: {pbf_path}")
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".osm-", dir=out.parent))
    writers = {layer: _LayerWriter(tmp / f"{layer}.parquet", LAYER_GEOMETRY[layer]) for layer in LAYERS}
    fab = osmium.geom.WKBFactory()
    failed = 0
    try:
        processor = osmium.FileProcessor(pbf_path).with_locations().with_areas()
        for obj in processor:
            tags = obj.tags
            if isinstance(obj, Node):  # what obj.is_node() tests, narrowing the type
                cat = _poi_category(tags)
                if cat:
                    writers["pois"].add(f"n{obj.id}", cat, fab.create_point(obj))
            elif isinstance(obj, Way):
                hw = tags.get("highway")
                if hw and tags.get("area") != "yes":
                    try:
                        writers["roads"].add(f"w{obj.id}", hw, fab.create_linestring(obj))
                    except (RuntimeError, osmium.InvalidLocationError):
                        failed += 1
            elif isinstance(obj, Area):
                oid = f"{'w' if obj.from_way() else 'r'}{obj.orig_id()}"
                layers: list[tuple[str, str]] = []
                building = tags.get("building")
                if building and building != "no":
                    layers.append(("buildings", building))
                landuse = tags.get("landuse")
                if landuse:
                    layers.append(("landuse", landuse))
                green = _green_category(tags)
                if green:
                    layers.append(("green", green))
                poi = _poi_category(tags)
                if not layers and not poi:
                    continue
                try:
                    geom_hex = fab.create_multipolygon(obj)
                except (RuntimeError, osmium.InvalidLocationError):
                    failed += 1
                    continue
                for layer, cat in layers:
                    writers[layer].add(oid, cat, geom_hex)
                if poi:  # POIs mapped as areas count once, at a point inside the area
                    pt = shp_wkb.loads(geom_hex, hex=True).representative_point()
                    writers["pois"].add(oid, poi, pt.wkb_hex)
    finally:
        for w in writers.values():
            w.close()
    counts = {layer: w.count for layer, w in writers.items()}
    counts["_failed_geometries"] = failed
    (tmp / "_counts.json").write_text(json.dumps(counts))
    if out.exists():
        import shutil

        shutil.rmtree(out)
    os.replace(tmp, out)
    return counts


def converted_layers(pbf_path: str, cache_root: str) -> tuple[str, dict[str, int]]:
    """The layer folder for a PBF, converting it once per file content."""
    out = Path(cache_root) / f"{Path(pbf_path).name}-{pbf_fingerprint(pbf_path)}"
    marker = out / "_counts.json"
    if marker.is_file():
        return str(out), json.loads(marker.read_text())
    return str(out), convert_pbf(pbf_path, str(out))
