"""The interactive HTML map: a pure function on small arrays, then the page opened in headless Chromium
(Debian's ``chromium``; ``.ci/run`` installs it) from the file with the network off.

In the browser the page must draw one shape per region that has a geometry, colour every shape, switch
layers from the address (``#layer=<name>``), load no resource and log nothing to the console; the test
saves a screenshot next to the report. Without Chromium the browser test is skipped, unless
``COOKIE_REQUIRE_CHROMIUM`` is set (CI sets it), where it fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest

from cookie.evaluation.html_map import TaskLayer, html_map, svg_paths, write_html_map

REPO = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _regions() -> tuple[list, list[str]]:
    """A 6 x 4 grid of cells near Helsinki (0.01 deg lon x 0.005 deg lat: about 555 m square at 60 N), one
    with a hole, one a MultiPolygon, one without geometry; ids with characters HTML must escape."""
    import shapely

    geoms: list = []
    for j in range(4):
        for i in range(6):
            lon, lat = 24.90 + 0.01 * i, 60.15 + 0.005 * j
            geoms.append(shapely.box(lon, lat, lon + 0.01, lat + 0.005))
    geoms[0] = geoms[0].difference(geoms[0].centroid.buffer(0.001))  # a hole
    geoms[7] = shapely.MultiPolygon(
        [shapely.box(24.91, 60.155, 24.914, 60.157), shapely.box(24.915, 60.157, 24.92, 60.16)]
    )
    geoms[10] = None
    ids = [f"r{k}<&>" if k == 3 else f"r{k}" for k in range(len(geoms))]
    return geoms, ids


def _case() -> dict:
    geoms, ids = _regions()
    n = len(geoms)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 8))
    X[5] = np.nan  # no embedding
    actual = rng.uniform(0, 1, n)
    pred = actual + rng.normal(scale=0.1, size=n)
    pred[2] = actual[2] = np.nan  # never in a test fold
    tasks = [
        TaskLayer("green.ridge_kfold", actual, pred, unit="share_green"),
        TaskLayer("crime.spatial_block", actual * 100, pred * 100),
    ]
    return {"geoms": geoms, "ids": ids, "X": X, "tasks": tasks, "n": n, "drawn": n - 1}


LAYERS = [
    "embedding PC1-3 (RGB)",
    "green.ridge_kfold: label",
    "green.ridge_kfold: prediction",
    "green.ridge_kfold: error",
    "crime.spatial_block: label",
    "crime.spatial_block: prediction",
    "crime.spatial_block: error",
]


def _data(page: str) -> dict:
    m = re.search(r'<script type="application/json" id="map-data">(.*?)</script>', page, re.S)
    assert m
    return json.loads(m.group(1))


def test_page_is_self_contained_with_one_path_per_region():
    c = _case()
    page = html_map(c["geoms"], c["ids"], embedding=c["X"], tasks=c["tasks"], title="toy </script> & co")
    # nothing outside the file: no script / style / image / font reference, no URL at all
    for bad in ("src=", "href=", "http:", "https:", "url(", "@import", "<link", "<iframe", "<img"):
        assert bad not in page, bad
    assert page.count("<path data-i=") == c["drawn"] and 'data-i="10"' not in page
    assert "toy &lt;/script&gt; &amp; co" in page and page.count("</script>") == 2
    data = _data(page)
    assert [layer["name"] for layer in data["layers"]] == LAYERS
    assert data["ids"][3] == "r3<&>"
    assert all(len(layer["colours"]) == c["n"] for layer in data["layers"])
    assert data["layers"][0]["colours"][5] is None and data["layers"][2]["colours"][2] is None
    assert re.fullmatch(r"#[0-9a-f]{6}", data["layers"][0]["colours"][0])
    # one colour scale for label and prediction; the error scale is symmetric
    lab, pred, err = (data["layers"][k]["legend"] for k in (1, 2, 3))
    assert (lab["min"], lab["max"]) == (pred["min"], pred["max"]) and err["min"] == -err["max"]
    assert data["tasks"][0]["actual"][2] is None and data["tasks"][0]["predicted"][2] is None
    # the hole and the MultiPolygon are sub-paths of their region's one path
    paths, _, _ = svg_paths(c["geoms"])
    assert paths[0].count("M") == 2 and paths[7].count("M") == 2 and paths[10] is None
    with pytest.raises(ValueError, match="ids"):
        html_map(c["geoms"], c["ids"][:-1])
    with pytest.raises(ValueError, match="embedding rows"):
        html_map(c["geoms"], c["ids"], embedding=c["X"][:-1])
    with pytest.raises(ValueError, match="predicted"):
        html_map(c["geoms"], c["ids"], tasks=[TaskLayer("t", np.zeros(c["n"]), np.zeros(3))])


def test_cells_keep_their_ground_shape():
    """0.01 deg of longitude by 0.005 deg of latitude at 60.16 N is about 555 m x 556 m: square in the SVG,
    not twice as wide as tall (as when drawn in degrees)."""
    import shapely

    paths, w, h = svg_paths([shapely.box(24.93, 60.16, 24.94, 60.165)])
    xy = np.array([[float(v) for v in p.split(",")] for p in paths[0][1:-1].split()])
    dx, dy = np.ptp(xy[:, 0]), np.ptp(xy[:, 1])
    assert dx / dy == pytest.approx(1.0, abs=0.01) and w == pytest.approx(h, rel=0.01)


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("COOKIE_REQUIRE_CHROMIUM"):
        pytest.fail("headless Chromium is required (COOKIE_REQUIRE_CHROMIUM) but not found: apt-get install chromium")
    pytest.skip("no chromium (apt-get install chromium)")


def _js(v: float) -> str:
    """A number as the page's tooltip writes it (4 significant digits)."""
    return f"{float(f'{v:.4g}'):.15g}"


def _open(
    chromium: str,
    page: Path,
    profile: Path,
    layer: str | None = None,
    region: str | None = None,
    screenshot: Path | None = None,
) -> tuple[str, list[str]]:
    """Open ``page`` from its file in headless Chromium with the network off; returns (DOM after the page's
    script ran, console lines)."""
    parts = [f"layer={quote(layer, safe='')}"] if layer else []
    parts += [f"region={quote(region, safe='')}"] if region else []
    url = page.resolve().as_uri() + ("#" + "&".join(parts) if parts else "")
    cmd = [
        chromium,
        "--headless",
        "--no-sandbox",  # CI containers run as root
        "--disable-gpu",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--proxy-server=127.0.0.1:9",  # no network: every request would go to a closed port ...
        "--host-resolver-rules=MAP * ~NOTFOUND",  # ... and no host name resolves
        "--enable-logging=stderr",
        "--v=0",
        "--window-size=1200,800",
        *([f"--screenshot={screenshot}"] if screenshot else []),
        "--dump-dom",
        url,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    return proc.stdout, console


def _body(dom: str) -> dict[str, str]:
    m = re.search(r"<body([^>]*)>", dom)
    assert m, dom[:500]
    return dict(re.findall(r'([\w-]+)="([^"]*)"', m.group(1)))


def test_page_in_headless_chromium(tmp_path):
    chromium = _chromium()
    assert chromium
    c = _case()
    report = tmp_path / "report"
    page = write_html_map(report / "map.html", c["geoms"], c["ids"], embedding=c["X"], tasks=c["tasks"], title="toy")

    dom, console = _open(chromium, page, tmp_path / "profile", screenshot=report / "map.png")
    assert console == []  # no console error (nor any other message)
    body = _body(dom)
    assert body["data-regions"] == str(c["drawn"]) and body["data-resources"] == "0"
    assert body["data-layer"] == LAYERS[0]
    shapes = re.findall(r"<path data-i=\"(\d+)\"[^>]*>", dom)
    assert len(shapes) == c["drawn"]
    fills = re.findall(r'<path data-i="\d+" d="[^"]*" fill="(#[0-9a-f]{6})"', dom)
    assert len(fills) == c["drawn"] and len(set(fills)) > 10  # every shape coloured, by its own colour
    assert len(re.findall(r'<input type="radio" name="layer"', dom)) == len(LAYERS)  # the switcher
    shot = (report / "map.png").read_bytes()
    assert shot[:8] == PNG_MAGIC and len(shot) > 10_000

    # the layer and a pinned region from the address: the prediction layer colours the untested region
    # grey; the region's tooltip gives its id (escaped) and per task its label, prediction and error
    dom2, console2 = _open(chromium, page, tmp_path / "profile", layer=LAYERS[2], region=c["ids"][3])
    assert console2 == []
    body2 = _body(dom2)
    assert body2["data-layer"] == LAYERS[2] and body2["data-region"] == "r3&lt;&amp;&gt;"
    assert re.search(r'<path data-i="2" d="[^"]*" fill="#d9d9d9"', dom2)
    assert re.search(r'<path data-i="3" d="[^"]*" fill="#[0-9a-f]{6}" class="sel"', dom2)
    tip = re.search(r'<div id="tip" style="([^"]*)">(.*?)</div>', dom2, re.S)
    assert tip and "display: block" in tip.group(1)
    cells = re.findall(r"<td>([^<]*)</td>", tip.group(2))
    t0 = c["tasks"][0]
    a, p = float(np.asarray(t0.actual)[3]), float(np.asarray(t0.predicted)[3])
    assert "<b>r3&lt;&amp;&gt;</b>" in tip.group(2)
    assert cells[:8] == ["", "label", "prediction", "error", t0.name, _js(a), _js(p), _js(p - a)]
    assert cells[8] == "crime.spatial_block" and len(cells) == 12

    # the harness does see a broken page's console error (so the empty console above means something)
    broken = page.with_name("broken.html")
    broken.write_text(page.read_text().replace('JSON.parse(document.getElementById("map-data")', "JSON.parse(("))
    _, console3 = _open(chromium, broken, tmp_path / "profile")
    assert any("Uncaught" in line for line in console3)


def test_data_credit_on_the_page():
    """The default data is OpenStreetMap's: its ODbL attribution is printed on the map, and nothing else is."""
    from cookie.config import load_config

    credit = load_config(REPO / "conf" / "helsinki.yaml").data_credit()
    assert "OpenStreetMap contributors" in credit and "ODbL" in credit
    c = _case()
    page = html_map(c["geoms"], c["ids"], embedding=c["X"], credit=credit)
    assert f'<div id="credit">{credit}</div>' in page and "http" not in page
    assert 'id="credit"' not in html_map(c["geoms"], c["ids"], embedding=c["X"])
    assert load_config(REPO / "conf" / "manhattan180.yaml").data_credit() == ""
