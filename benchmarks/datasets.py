"""Loaders for the two public NYC benchmarks under ``shared/data`` (numpy / json / csv only).

* :func:`load_manhattan180` -- the MVURE / MGFN / HREP / HAFusion Manhattan benchmark (180 regions);
* :func:`load_nyc_tracts` -- RegionDCL's 2,325 NYC census tracts with the released embeddings.

See the ``PROVENANCE.md`` of each folder for sources, licences and caveats. Both folders are internal to
the project; code that uses them should skip cleanly when :func:`shared_data_dir` returns ``None``.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "LANDUSE_COLUMNS",
    "MANHATTAN_DIRNAME",
    "TRACTS_DIRNAME",
    "Manhattan180",
    "NycTracts",
    "load_manhattan180",
    "load_nyc_tracts",
    "shared_data_dir",
]

MANHATTAN_DIRNAME = "nyc-manhattan-180"
TRACTS_DIRNAME = "nyc-census-tracts-2325"
LANDUSE_COLUMNS = (
    "lu_residential",
    "lu_mixed_or_commercial",
    "lu_industrial",
    "lu_transport_public_parking",
    "lu_open_space_or_vacant",
)


def shared_data_dir(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """``explicit``, else :func:`cookie.config.project.shared_data_dir`; ``None`` when the folder does not exist."""
    from cookie.config.project import shared_data_dir as find

    d = Path(explicit) if explicit is not None else find()
    return d if d.is_dir() else None


@dataclass
class Manhattan180:
    """The Manhattan-180 arrays, all indexed by region id 0..179."""

    root: Path
    mobility: np.ndarray  # (180, 180) taxi OD counts, rows = origins (hrep/mobility_adj.npy[0])
    poi: np.ndarray  # (180, 26) POI category counts (hafusion/poi_dist.npy)
    landuse: np.ndarray  # (180, 11) MapPLUTO lot counts per land-use class (hafusion/landUse_dist.npy)
    crime: np.ndarray  # (180,) label
    check_in: np.ndarray  # (180,) label
    service_calls: np.ndarray  # (180,) label
    community_district: np.ndarray  # (180,) int label for the clustering task
    regions_geojson: Path  # converted/mh180_regions_wgs84.geojson

    def regions(self) -> list[dict[str, Any]]:
        """The 180 region geometries as GeoJSON dicts, sorted by ``region_id``."""
        fc = json.loads(self.regions_geojson.read_text())
        feats = sorted(fc["features"], key=lambda f: int(f["properties"]["region_id"]))
        return [f["geometry"] for f in feats]

    def centroids(self) -> np.ndarray:
        """(180, 2) lon / lat centroids from the GeoJSON properties."""
        fc = json.loads(self.regions_geojson.read_text())
        feats = sorted(fc["features"], key=lambda f: int(f["properties"]["region_id"]))
        return np.array(
            [[f["properties"]["centroid_lon"], f["properties"]["centroid_lat"]] for f in feats], dtype=float
        )


def load_manhattan180(root: str | os.PathLike[str] | None = None) -> Manhattan180:
    """Load Manhattan-180 from ``root`` (the ``nyc-manhattan-180`` folder, or ``shared/data`` above it)."""
    base = _resolve(root, MANHATTAN_DIRNAME)
    cd = json.loads((base / "hrep" / "mh_cd.json").read_text())
    return Manhattan180(
        root=base,
        mobility=np.load(base / "hrep" / "mobility_adj.npy")[0].astype(float),
        poi=np.load(base / "hafusion" / "poi_dist.npy").astype(float),
        landuse=np.load(base / "hafusion" / "landUse_dist.npy").astype(float),
        crime=np.load(base / "hrep" / "crime_counts.npy").reshape(-1).astype(float),
        check_in=np.load(base / "hrep" / "check_counts.npy").reshape(-1).astype(float),
        service_calls=np.load(base / "hafusion" / "serviceCall_counts.npy").reshape(-1).astype(float),
        community_district=np.array([int(cd[str(i)]) for i in range(len(cd))]),
        regions_geojson=base / "converted" / "mh180_regions_wgs84.geojson",
    )


@dataclass
class NycTracts:
    """RegionDCL's NYC tracts: labels per tract (in ``idx`` order) and the released 64-d embeddings."""

    root: Path
    idx: np.ndarray  # (2325,)
    boro_ct2020: np.ndarray  # (2325,) str
    population_density: np.ndarray  # (2325,)
    landuse: np.ndarray  # (2325, 5) shares, columns LANDUSE_COLUMNS
    eval_subset: np.ndarray  # (2325,) bool, in_regiondcl_eval_subset
    centroids: np.ndarray  # (2325, 2) lon / lat
    embeddings: dict[str, np.ndarray] = field(default_factory=dict)  # method -> (2325, 64), NaN rows if missing
    has: dict[str, np.ndarray] = field(default_factory=dict)  # method -> (2325,) bool

    @property
    def regions_geojson(self) -> Path:
        return self.root / "tracts_wgs84.geojson"

    def mask(self, *methods: str) -> np.ndarray:
        """RegionDCL's evaluation rows: ``in_regiondcl_eval_subset`` and every given method has an embedding."""
        m = self.eval_subset.copy()
        for name in methods:
            m &= self.has[name]
        return m

    def regions(self) -> list[dict[str, Any]]:
        """The tract geometries as GeoJSON dicts (WGS84), in ``idx`` order."""
        fc = json.loads(self.regions_geojson.read_text())
        feats = sorted(fc["features"], key=lambda f: int(f["properties"]["idx"]))
        return [f["geometry"] for f in feats]


def load_nyc_tracts(root: str | os.PathLike[str] | None = None) -> NycTracts:
    """Load the NYC census tracts from ``root`` (the ``nyc-census-tracts-2325`` folder, or ``shared/data``)."""
    base = _resolve(root, TRACTS_DIRNAME)
    with open(base / "tract_labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    rows.sort(key=lambda r: int(r["idx"]))
    idx = np.array([int(r["idx"]) for r in rows])
    if not np.array_equal(idx, np.arange(len(rows))):
        raise ValueError("tract_labels.csv idx is not 0..N-1")
    out = NycTracts(
        root=base,
        idx=idx,
        boro_ct2020=np.array([r["BoroCT2020"] for r in rows]),
        population_density=np.array([float(r["population_density"]) for r in rows]),
        landuse=np.array([[float(r[c]) for c in LANDUSE_COLUMNS] for r in rows]),
        eval_subset=np.array([r["in_regiondcl_eval_subset"].strip().lower() in ("1", "true") for r in rows]),
        centroids=np.array([[float(r["centroid_lon"]), float(r["centroid_lat"])] for r in rows]),
    )
    with np.load(base / "regiondcl_release_embeddings.npz", allow_pickle=False) as z:
        for key in z.files:
            if key.startswith("emb_"):
                name = key[4:]
                out.embeddings[name] = z[key].astype(float)
                out.has[name] = z[f"has_{name}"].astype(bool)
    return out


def _resolve(root: str | os.PathLike[str] | None, dirname: str) -> Path:
    if root is None:
        data = shared_data_dir()
        if data is None:
            raise FileNotFoundError("shared/data not found; set COOKIE_SHARED_DATA")
        return data / dirname
    p = Path(root)
    return p / dirname if (p / dirname).is_dir() else p
