"""One self-contained interactive HTML map of an evaluation: no network is needed to open it.

    from cookie.evaluation.html_map import TaskLayer, write_html_map
    write_html_map("reports/x/map.html", geometries, ids, embedding=X,
                   tasks=[TaskLayer("green (ridge_kfold)", actual, predicted, unit="share_green")])

The page is plain HTML with an inline SVG (one ``<path>`` per region that has a geometry, holes and
multi-polygons as sub-paths of that path), an inline stylesheet and a short inline vanilla script: no
external script, stylesheet, font, image or tile is referenced, so it works from a file, offline, and as an
MLflow artifact. Geometries in longitude / latitude are drawn in the same local metric projection as the PNG
maps (:func:`cookie.evaluation.maps.local_projection`), so H3 hexagons keep their shape.

Layers (radio buttons; one shown at a time):

* ``embedding PC1-3 (RGB)``: the first three principal components of the embedding as red, green, blue
  (:func:`cookie.evaluation.maps.pca_rgb`);
* per task: its label (``actual``), its ``prediction`` (both on one colour scale) and its ``error``
  (prediction - actual, on a symmetric diverging scale).

Hovering over a region shows its id and, per task, label, prediction and error; a click pins that tooltip
(and outlines the region) until the next click. The wheel zooms, dragging pans, a double click resets the
view. The address follows the switcher and the pinned region, so a view can be shared:
``map.html#layer=<name or index>&region=<id>``. Regions with no value in a layer (NaN, e.g. never in a test fold) are
light grey; regions without a geometry are not drawn.

:func:`html_map` is a pure function (arrays in, a string out); after its script has run, the page's
``<body>`` carries ``data-regions`` (shapes drawn), ``data-layer`` (the layer shown), ``data-region`` (the
pinned region, if any) and ``data-resources`` (resources the page loaded: 0), which the headless-browser test
reads.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["TaskLayer", "html_map", "svg_paths", "write_html_map"]

NAN_COLOUR = "#d9d9d9"
SCALE_CMAP = "viridis"
ERROR_CMAP = "RdBu_r"
_VIEW_WIDTH = 1000.0
_PAD = 10.0


@dataclass(frozen=True)
class TaskLayer:
    """One task's values per region (aligned with the regions; NaN where the region was not evaluated)."""

    name: str
    actual: ArrayLike
    predicted: ArrayLike
    unit: str = ""


def _rings(geom: Any) -> list[np.ndarray]:
    """The rings (exterior and holes) of the polygonal parts of ``geom``, as ``(k, 2)`` arrays."""
    import shapely

    out: list[np.ndarray] = []
    if geom is None or geom.is_empty:
        return out
    for part in shapely.get_parts(geom):
        if isinstance(part, shapely.Polygon):
            out.append(np.asarray(part.exterior.coords)[:, :2])
            out.extend(np.asarray(r.coords)[:, :2] for r in part.interiors)
        elif isinstance(part, (shapely.MultiPolygon, shapely.GeometryCollection)):
            out.extend(_rings(part))
    return out


def svg_paths(regions: Any, crs: Any | None = None) -> tuple[list[str | None], float, float]:
    """SVG path data per region (``None`` without a polygonal geometry) in a ``width x height`` view box.

    Geographic regions are projected with :func:`~cookie.evaluation.maps.local_projection`; x grows east,
    y grows south (SVG), one unit is the same ground distance on both axes. Returns ``(paths, width,
    height)``.
    """
    from cookie.evaluation.maps import local_projection, region_series

    gs = local_projection(region_series(regions, crs))
    rings = [_rings(g) for g in gs]
    pts = [r for rs in rings for r in rs]
    if not pts:
        return [None] * len(rings), _VIEW_WIDTH, _VIEW_WIDTH
    allp = np.concatenate(pts)
    xmin, ymin = allp.min(axis=0)
    xmax, ymax = allp.max(axis=0)
    span = max(float(xmax - xmin), float(ymax - ymin), 1e-9)
    scale = (_VIEW_WIDTH - 2 * _PAD) / span
    width = float(xmax - xmin) * scale + 2 * _PAD
    height = float(ymax - ymin) * scale + 2 * _PAD
    paths: list[str | None] = []
    for rs in rings:
        if not rs:
            paths.append(None)
            continue
        subs = []
        for r in rs:
            x = (r[:, 0] - xmin) * scale + _PAD
            y = (ymax - r[:, 1]) * scale + _PAD
            xy = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(x[:-1], y[:-1], strict=True))
            subs.append(f"M{xy}Z")
        paths.append("".join(subs))
    return paths, round(width, 1), round(height, 1)


def _hex(rgba: Sequence[float]) -> str:
    return "#" + "".join(f"{round(float(c) * 255):02x}" for c in rgba[:3])


def _finite(v: np.ndarray) -> list[float | None]:
    return [float(x) if math.isfinite(x) else None for x in v.tolist()]


def _scale_layer(name: str, values: np.ndarray, vmin: float, vmax: float, cmap: str, label: str) -> dict[str, Any]:
    import matplotlib

    cm = matplotlib.colormaps[cmap]
    span = vmax - vmin or 1.0
    colours = [_hex(cm((v - vmin) / span)) if math.isfinite(v) else None for v in values.tolist()]
    stops = [_hex(cm(t)) for t in np.linspace(0, 1, 11)]
    return {"name": name, "colours": colours, "legend": {"stops": stops, "min": vmin, "max": vmax, "label": label}}


def _range(*arrays: np.ndarray) -> tuple[float, float]:
    vals = np.concatenate([a[np.isfinite(a)] for a in arrays])
    if not vals.size:
        return 0.0, 1.0
    lo, hi = float(vals.min()), float(vals.max())
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def _layers(
    n: int, embedding: ArrayLike | None, tasks: Sequence[TaskLayer]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    from cookie.evaluation.maps import pca_rgb

    layers: list[dict[str, Any]] = []
    task_values: list[dict[str, Any]] = []
    if embedding is not None:
        rgb = pca_rgb(embedding)
        if rgb.shape[0] != n:
            raise ValueError(f"got {n} regions and {rgb.shape[0]} embedding rows")
        colours = [_hex(c) if np.all(np.isfinite(c)) else None for c in rgb]
        layers.append(
            {"name": "embedding PC1-3 (RGB)", "colours": colours, "legend": {"text": "R, G, B = PC1, PC2, PC3"}}
        )
    for t in tasks:
        a = np.asarray(t.actual, dtype=float).reshape(-1)
        p = np.asarray(t.predicted, dtype=float).reshape(-1)
        if not (len(a) == len(p) == n):
            raise ValueError(f"task {t.name!r}: got {n} regions, {len(a)} actual and {len(p)} predicted values")
        vmin, vmax = _range(a, p)
        err = p - a
        lim = float(np.nanmax(np.abs(err))) if np.any(np.isfinite(err)) else 1.0
        lim = lim or 1.0
        layers.append(_scale_layer(f"{t.name}: label", a, vmin, vmax, SCALE_CMAP, t.unit))
        layers.append(_scale_layer(f"{t.name}: prediction", p, vmin, vmax, SCALE_CMAP, t.unit))
        layers.append(_scale_layer(f"{t.name}: error", err, -lim, lim, ERROR_CMAP, "prediction - label"))
        task_values.append({"name": t.name, "actual": _finite(a), "predicted": _finite(p)})
    return layers, task_values


def _json(obj: Any) -> str:
    """JSON safe inside ``<script>``: no ``<``, ``>`` or ``&`` left that could close the element."""
    s = json.dumps(obj, separators=(",", ":"), allow_nan=False)
    return s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


_CSS = """
*{box-sizing:border-box}
body{margin:0;font:13px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;color:#222;display:flex;height:100vh}
#side{width:300px;padding:12px;border-right:1px solid #ddd;overflow-y:auto;overflow-x:hidden;flex:none}
#side h1{font-size:15px;margin:0 0 8px}
#side .info div{overflow-wrap:anywhere}
#side fieldset{border:1px solid #ddd;margin:8px 0;padding:6px 8px;min-width:0}
#side label{display:block;cursor:pointer;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
#main{flex:1;position:relative;overflow:hidden;background:#fafafa}
#map{width:100%;height:100%;cursor:grab;display:block}
#map path{stroke:#fff;stroke-width:.4;vector-effect:non-scaling-stroke}
#map path:hover,#map path.sel{stroke:#000;stroke-width:1.5}
#legend .bar{height:12px;border:1px solid #bbb}
#legend .ends{display:flex;justify-content:space-between;font-variant-numeric:tabular-nums}
#tip{position:absolute;pointer-events:none;background:rgba(255,255,255,.95);border:1px solid #999;
 padding:4px 7px;font-size:12px;display:none;white-space:nowrap;box-shadow:0 1px 4px rgba(0,0,0,.2)}
#tip table{border-collapse:collapse}#tip td{padding:0 4px}#tip td+td{text-align:right}
.note{color:#666;font-size:11px}
#credit{position:absolute;right:4px;bottom:2px;font-size:10px;color:#555;background:rgba(255,255,255,.7);padding:0 3px}
"""

# The page's script: layers, legend, tooltip, zoom / pan, and the address (#layer=...&region=...).
_JS = """
(function(){
"use strict";
var D=JSON.parse(document.getElementById("map-data").textContent);
var svg=document.getElementById("map"),tip=document.getElementById("tip"),main=document.getElementById("main");
var shapes=svg.querySelectorAll("path[data-i]"),byIndex={};
for(var j=0;j<shapes.length;j++)byIndex[shapes[j].getAttribute("data-i")]=shapes[j];
var form=document.getElementById("layers"),legend=document.getElementById("legend"),layer=0,region=null;
function fmt(v){if(v===null||v===undefined)return "\\u2013";var a=Math.abs(v);
 return a!==0&&(a<1e-3||a>=1e5)?v.toExponential(2):(+v.toPrecision(4)).toString();}
function esc(s){return String(s).replace(/[&<>"]/g,function(c){return {"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;"}[c];});}
function param(name){var m=new RegExp("[#&]"+name+"=([^&]*)").exec(location.hash);
 return m?decodeURIComponent(m[1]):null;}
function address(){var h="#layer="+encodeURIComponent(D.layers[layer].name);
 if(region!==null)h+="&region="+encodeURIComponent(D.ids[region]);
 try{history.replaceState(null,"",h);}catch(err){/* an opaque origin may refuse: the page works without */}}
function show(k){
 var L=D.layers[k];layer=k;
 for(var j=0;j<shapes.length;j++){var c=L.colours[+shapes[j].getAttribute("data-i")];
  shapes[j].setAttribute("fill",c===null?D.nan:c);}
 var g=L.legend,h="<b>"+esc(L.name)+"</b>";
 if(g.stops){h+='<div class="bar" style="background:linear-gradient(to right,'+g.stops.join(",")+')"></div>'+
  '<div class="ends"><span>'+fmt(g.min)+"</span><span>"+esc(g.label||"")+"</span><span>"+fmt(g.max)+"</span></div>";}
 else{h+="<div>"+esc(g.text)+"</div>";}
 h+='<div class="note"><span style="background:'+D.nan+'">&nbsp;&nbsp;&nbsp;</span> no value</div>';
 legend.innerHTML=h;document.body.setAttribute("data-layer",L.name);
}
function tipHtml(i){
 var h="<b>"+esc(D.ids[i])+"</b>";
 if(D.tasks.length){h+="<table><tr><td></td><td>label</td><td>prediction</td><td>error</td></tr>";
  D.tasks.forEach(function(T){var a=T.actual[i],p=T.predicted[i];
   h+="<tr><td>"+esc(T.name)+"</td><td>"+fmt(a)+"</td><td>"+fmt(p)+"</td><td>"+
    fmt(a===null||p===null?null:p-a)+"</td></tr>";});h+="</table>";}
 return h;
}
function place(cx,cy){
 var b=main.getBoundingClientRect(),x=cx-b.left+14,y=cy-b.top+14;
 if(x+tip.offsetWidth>b.width)x-=tip.offsetWidth+28;if(y+tip.offsetHeight>b.height)y-=tip.offsetHeight+28;
 tip.style.left=Math.max(0,x)+"px";tip.style.top=Math.max(0,y)+"px";
}
function select(i){
 var old=region===null?null:byIndex[region];if(old)old.classList.remove("sel");
 region=i;if(i===null){tip.style.display="none";return;}
 var el=byIndex[i];if(!el){region=null;return;}
 el.classList.add("sel");tip.innerHTML=tipHtml(i);tip.style.display="block";
 var r=el.getBoundingClientRect();place(r.left+r.width/2,r.top+r.height/2);
 document.body.setAttribute("data-region",D.ids[i]);
}
D.layers.forEach(function(L,k){
 var lab=document.createElement("label"),r=document.createElement("input");
 r.type="radio";r.name="layer";r.value=k;r.addEventListener("change",function(){show(k);address();});
 lab.appendChild(r);lab.appendChild(document.createTextNode(" "+L.name));lab.title=L.name;form.appendChild(lab);
});
var want=param("layer");
D.layers.forEach(function(L,k){if(L.name===want||String(k)===want)layer=k;});
if(D.layers.length){form.elements[layer].checked=true;show(layer);}
svg.addEventListener("mousemove",function(e){
 var t=e.target,i=t.getAttribute&&t.getAttribute("data-i");
 if(i===null||i===undefined){if(region===null)tip.style.display="none";return;}
 tip.innerHTML=tipHtml(+i);tip.style.display="block";place(e.clientX,e.clientY);
});
svg.addEventListener("mouseleave",function(){if(region===null)tip.style.display="none";else select(region);});
svg.addEventListener("click",function(e){
 if(moved)return;
 var i=e.target.getAttribute&&e.target.getAttribute("data-i");
 select(i===null||i===undefined||+i===region?null:+i);address();
});
var vb0=svg.getAttribute("viewBox").split(" ").map(Number),vb=vb0.slice(),drag=null,moved=false;
function setvb(){svg.setAttribute("viewBox",vb.join(" "));}
function pt(e){var r=svg.getBoundingClientRect(),s=Math.max(vb[2]/r.width,vb[3]/r.height);
 return [vb[0]+vb[2]/2+(e.clientX-r.left-r.width/2)*s,vb[1]+vb[3]/2+(e.clientY-r.top-r.height/2)*s,s];}
svg.addEventListener("wheel",function(e){e.preventDefault();var p=pt(e),f=e.deltaY<0?1/1.25:1.25;
 vb=[p[0]-(p[0]-vb[0])*f,p[1]-(p[1]-vb[1])*f,vb[2]*f,vb[3]*f];setvb();},{passive:false});
svg.addEventListener("mousedown",function(e){moved=false;drag=[e.clientX,e.clientY,vb[0],vb[1],pt(e)[2]];svg.style.cursor="grabbing";});
window.addEventListener("mouseup",function(){drag=null;svg.style.cursor="";});
window.addEventListener("mousemove",function(e){if(!drag)return;
 if(Math.abs(e.clientX-drag[0])+Math.abs(e.clientY-drag[1])>3)moved=true;
 vb[0]=drag[2]-(e.clientX-drag[0])*drag[4];vb[1]=drag[3]-(e.clientY-drag[1])*drag[4];setvb();});
svg.addEventListener("dblclick",function(){vb=vb0.slice();setvb();});
var pick=param("region");if(pick!==null&&D.ids.indexOf(pick)>=0)select(D.ids.indexOf(pick));
document.body.setAttribute("data-regions",String(shapes.length));
document.body.setAttribute("data-resources",String(performance.getEntriesByType("resource").length));
})();
"""


def html_map(
    regions: Any,
    ids: Sequence[Any],
    embedding: ArrayLike | None = None,
    tasks: Sequence[TaskLayer] = (),
    title: str = "regions",
    info: dict[str, Any] | None = None,
    crs: Any | None = None,
    credit: str = "",
) -> str:
    """The self-contained HTML page (see the module docstring) as a string.

    Args:
        regions: ``N`` region geometries, anything :func:`cookie.evaluation.maps.region_series` reads.
        ids: the ``N`` region ids (shown in the tooltip).
        embedding: ``(N, d)`` embedding rows aligned with the regions (NaN rows: no embedding).
        tasks: per task, label and prediction per region (NaN: not evaluated).
        title: page title.
        info: extra ``key: value`` lines shown under the title.
        crs: CRS of the geometries (default: the input's, else WGS84 for lon / lat coordinates).
        credit: the data's attribution, shown in the map's corner (OpenStreetMap's ODbL asks for one).
    """
    paths, width, height = svg_paths(regions, crs)
    n = len(paths)
    if len(ids) != n:
        raise ValueError(f"got {n} regions and {len(ids)} ids")
    layers, task_values = _layers(n, embedding, tasks)
    data = {"ids": [str(r) for r in ids], "layers": layers, "tasks": task_values, "nan": NAN_COLOUR}
    shapes = "\n".join(f'<path data-i="{i}" d="{d}"/>' for i, d in enumerate(paths) if d is not None)
    drawn = sum(d is not None for d in paths)
    lines = "".join(f"<div><b>{html.escape(str(k))}</b>: {html.escape(str(v))}</div>" for k, v in (info or {}).items())
    t = html.escape(title)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{t}</title>
<style>{_CSS}</style>
</head>
<body>
<div id="side">
<h1>{t}</h1>
<div class="note">{drawn} of {n} regions drawn (local metric projection). Hover: values, click: pin, wheel: zoom,
drag: pan, double click: reset.</div>
<div class="info">{lines}</div>
<fieldset><legend>layer</legend><form id="layers"></form></fieldset>
<div id="legend"></div>
</div>
<div id="main">
<svg id="map" viewBox="0 0 {width} {height}" preserveAspectRatio="xMidYMid meet" role="img" aria-label="{t}">
{shapes}
</svg>
<div id="tip"></div>
{f'<div id="credit">{html.escape(credit)}</div>' if credit else ""}
</div>
<script type="application/json" id="map-data">{_json(data)}</script>
<script>{_JS}</script>
</body>
</html>
"""


def write_html_map(path: str | Path, regions: Any, ids: Sequence[Any], **kwargs: Any) -> Path:
    """Write :func:`html_map` to ``path`` (parent folders are created); returns the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html_map(regions, ids, **kwargs), encoding="utf-8")
    return out
