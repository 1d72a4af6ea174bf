"""The pages ``componentx serve`` shows, as HTML made on the server: no script at all, a style
sheet of its own, charts as SVG drawn by vl-convert from Vega-Lite (no network), and every
string that comes from a file or a request escaped."""

from __future__ import annotations

import html
import re
from urllib.parse import urlencode

import numpy as np

from componentx.decisions.rules import risk_title
from componentx.serving.live import TRIAGE, FleetSnapshot

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 0; color: #1d2733; background: #f6f7f9; }
header { background: #1d2733; color: #fff; padding: 10px 24px; display: flex; gap: 24px;
         align-items: baseline; }
header a { color: #cfe3ff; text-decoration: none; }
header h1 { font-size: 17px; margin: 0; }
main { padding: 16px 24px; max-width: 1200px; }
table { border-collapse: collapse; background: #fff; width: 100%; }
th, td { padding: 6px 10px; border-bottom: 1px solid #e3e6ea; text-align: left; }
th { background: #eef1f4; font-weight: 600; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
.cards { display: flex; gap: 12px; margin: 12px 0 16px; flex-wrap: wrap; }
.card { background: #fff; border: 1px solid #e3e6ea; border-radius: 6px; padding: 10px 14px;
        min-width: 150px; }
.card b { display: block; font-size: 20px; }
.triage { border-radius: 10px; padding: 1px 8px; font-size: 12px; white-space: nowrap; }
.act-now { background: #c0392b; color: #fff; }
.watch { background: #f5b041; color: #1d2733; }
.fine { background: #d5f5e3; color: #1d2733; }
.drift { border: 1px solid #d5d8dc; border-radius: 6px; padding: 8px 12px; margin: 12px 0; }
.drift.flagged { background: #fff4e5; border-color: #f5b041; }
.drift table { width: auto; margin-top: 6px; }
.note { color: #5d6d7e; }
form { margin: 8px 0 12px; }
nav.pages a { margin-right: 10px; }
"""


def page(title: str, body: str) -> str:
    """A whole page: the header with the site's links, then ``body`` (already escaped)."""
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{html.escape(title)}</title>"
            "<link rel=\"stylesheet\" href=\"/static/style.css\">"
            "<link rel=\"icon\" href=\"data:,\"></head><body>"
            f"<header><h1>componentx fleet</h1><a href=\"/\">Fleet</a>"
            f"<a href=\"/model\">Model card</a></header><main>{body}</main></body></html>")


def message_page(title: str, text: str) -> str:
    """A page that says one thing: why there is nothing else to show."""
    return page(title, f"<h2>{html.escape(title)}</h2><p>{html.escape(text)}</p>")


def login_page() -> str:
    """The form that sends the server's token once (POST, so that it stays out of URLs and
    logs); the cookie it sets then carries it."""
    return page("Sign in", "<h2>Sign in</h2><form method=\"post\" action=\"/login\"><label>"
                "Token <input name=\"token\" type=\"password\" autocomplete=\"off\"></label> "
                "<button>Sign in</button></form>")


def _badge(triage: str) -> str:
    return f"<span class=\"triage {triage.replace(' ', '-')}\">{triage}</span>"


def _drift_note(drift: dict | None) -> str:
    """The readouts' drift: the features flagged, and every feature's PSI folded away."""
    if not drift:
        return ""
    flagged = drift["flagged"]
    shown = ", ".join(f"{html.escape(name)} ({drift['psi'][name]:.2f})" for name in flagged[:8])
    headline = (f"<b>Drift:</b> {len(flagged)} of {len(drift['psi'])} features run differently "
                f"than in training (the PSI of their increments above {drift['threshold']}): "
                f"{shown}" if flagged else
                f"No drift flagged over {drift['increments']:,} increments"
                + ("" if drift["increments"] >= drift["min_increments"] else
                   f" (too few to judge: {drift['min_increments']} or more are)"))
    table = "".join(f"<tr><td>{html.escape(name)}</td><td class=\"number\">{value:.3f}</td></tr>"
                    for name, value in drift["psi"].items())
    return (f"<div class=\"drift{' flagged' if flagged else ''}\" id=\"drift\">{headline}"
            "<details><summary>each feature's PSI</summary><table><tbody>"
            f"{table}</tbody></table></details></div>")


def fleet_page(snapshot: FleetSnapshot, source: str, query: str, page_number: int,
               page_size: int, error: str | None = None) -> str:
    """Vehicles ranked by risk with their triage, counts per triage, the fleet's expected
    cost against always deciding 0, drift; searchable by vehicle, a page at a time; ``error``:
    why the readouts could not be scored anew (this snapshot is then the last one that
    could)."""
    meta = snapshot.bundle.meta
    shown, _, page_number, pages = snapshot.search(query, page_number, page_size)
    risk = html.escape(risk_title(meta["class_windows"], meta["risk_class"]))
    cards = "".join(f"<div class=\"card\">{_badge(name)}<b>{snapshot.counts[name]:,}</b>"
                    "vehicles</div>" for name in TRIAGE)
    saving = snapshot.expected_cost_always_0 - snapshot.expected_cost
    cards += (f"<div class=\"card\">expected cost<b>{snapshot.expected_cost:,.0f}</b>"
              f"against {snapshot.expected_cost_always_0:,.0f} if nothing is done "
              f"(saves {saving:,.0f})</div>")
    body = [f"<h2>{len(snapshot.summary):,} vehicles</h2>",
            f"<p class=\"note\">{html.escape(source)}, scored by the "
            f"{html.escape(meta['title'])} ({html.escape(meta['kind'])}).</p>",
            f"<p class=\"drift flagged\">The readouts changed but could not be scored "
            f"({html.escape(error)}); shown: the last ones that could.</p>" if error else "",
            f"<div class=\"cards\">{cards}</div>", _drift_note(snapshot.drift),
            "<form method=\"get\" action=\"/\"><label>Vehicle <input name=\"q\" "
            f"value=\"{html.escape(query)}\" inputmode=\"numeric\"></label> "
            "<button>Search</button></form>",
            f"<table id=\"fleet\"><thead><tr><th>#</th><th>vehicle</th><th>triage</th>"
            f"<th>{risk}</th><th>decision</th><th>expected cost</th><th>last readout</th>"
            "</tr></thead><tbody>"]
    first = (page_number - 1) * page_size
    for number, row in enumerate(shown, start=first + 1):
        body.append(
            f"<tr><td class=\"number\">{number}</td><td><a class=\"vehicle\" "
            f"href=\"/vehicles/{row['vehicle_id']}\">{row['vehicle_id']}</a></td>"
            f"<td>{_badge(row['triage'])}</td><td class=\"number\">{row['risk']:.4f}</td>"
            f"<td class=\"number\">{row['decision']}</td>"
            f"<td class=\"number\">{row['expected_cost']:,.2f}</td>"
            f"<td class=\"number\">{row['time_step']:g}</td></tr>")
    body.append("</tbody></table>")
    if pages > 1:
        links = []
        for target in sorted({1, page_number - 1, page_number + 1, pages} - {0, pages + 1}):
            parameters = urlencode({"q": query, "page": target} if query else {"page": target})
            label = f"page {target}" if target != page_number else f"<b>page {target}</b>"
            links.append(f"<a href=\"/?{html.escape(parameters)}\">{label}</a>")
        body.append(f"<nav class=\"pages\">{''.join(links)} of {pages}</nav>")
    return page("componentx fleet", "".join(body))


def risk_chart(times: np.ndarray, risk: np.ndarray, state: np.ndarray, alarm: dict | None,
               title: str) -> str:
    """The risk over a vehicle's readouts as SVG (vl-convert, no network): the alarm's on
    and off thresholds, the stretches it is on, the readouts where it switches on."""
    import vl_convert

    points = [{"time": float(t), "risk": float(r), "alarm": bool(a)}
              for t, r, a in zip(times, risk, state, strict=True)]
    layers = [{"mark": {"type": "line", "point": True, "color": "#1f4e79"},
               "encoding": {"x": {"field": "time", "type": "quantitative",
                                  "title": "time step"},
                            "y": {"field": "risk", "type": "quantitative", "title": title}}}]
    onsets = [p for i, p in enumerate(points) if p["alarm"] and (i == 0 or not
                                                                 points[i - 1]["alarm"])]
    if alarm:
        for name, colour in (("tau_on", "#c0392b"), ("tau_off", "#f5b041")):
            layers.append({"data": {"values": [{"y": alarm[name], "label": name}]},
                           "mark": {"type": "rule", "strokeDash": [5, 3], "color": colour},
                           "encoding": {"y": {"field": "y", "type": "quantitative"}}})
        if onsets:
            layers.append({"data": {"values": onsets},
                           "mark": {"type": "point", "shape": "triangle-up", "size": 120,
                                    "color": "#c0392b", "filled": True},
                           "encoding": {"x": {"field": "time", "type": "quantitative"},
                                        "y": {"field": "risk", "type": "quantitative"}}})
    spec = {"$schema": "https://vega.github.io/schema/vega-lite/v5.json", "width": 760,
            "height": 260, "data": {"values": points}, "layer": layers}
    return vl_convert.vegalite_to_svg(spec, allowed_base_urls=[])


def vehicle_page(snapshot: FleetSnapshot, vehicle: int, specs: dict[str, str],
                 features: tuple[list[str], np.ndarray, int] | str | None, chart: str) -> str:
    """One vehicle: its risk over time with the alarm, when the alarm would have fired, its
    specifications, and the inputs behind its latest prediction where the model has them
    (``features``: names, contributions and the class they are towards; or why there are
    none)."""
    meta = snapshot.bundle.meta
    rows = snapshot.vehicle_rows(vehicle)
    summary = next(row for row in snapshot.summary if row["vehicle_id"] == vehicle)
    times = snapshot.readouts.times[rows]
    state = snapshot.alarm[rows]
    fired = [float(times[i]) for i in range(len(rows)) if state[i] and (i == 0 or not state[i - 1])]
    alarm = meta.get("alarm")
    body = [f"<h2>Vehicle {vehicle} {_badge(summary['triage'])}</h2>",
            f"<p>{len(rows)} readouts; at the latest (time {summary['time_step']:g}) the risk "
            f"{html.escape(risk_title(meta['class_windows'], meta['risk_class']))} is "
            f"<b>{summary['risk']:.4f}</b>, the decision {summary['decision']} (expected cost "
            f"{summary['expected_cost']:,.2f}).</p>",
            f"<div id=\"trajectory\">{chart}</div>"]
    if alarm:
        body.append(f"<p>Alarm on at {alarm['min_consecutive']} readouts in a row with risk "
                    f"&ge; {alarm['tau_on']:.4g}, off below {alarm['tau_off']:.4g}. "
                    + (f"It would have fired at time {', '.join(f'{t:g}' for t in fired)}."
                       if fired else "It would not have fired.") + "</p>")
    else:
        body.append("<p class=\"note\">This bundle carries no alarm (the pipeline had no fleet "
                    "holdout to pick its thresholds on).</p>")
    if specs:
        body.append("<h3>Specifications</h3><table><tbody>" + "".join(
            f"<tr><th>{html.escape(name)}</th><td>{html.escape(value)}</td></tr>"
            for name, value in specs.items()) + "</tbody></table>")
    body.append("<h3>Behind the latest prediction</h3>")
    if features is None:
        body.append(f"<p class=\"note\" id=\"features\">The {html.escape(meta['title'])} has "
                    "no per-input attributions.</p>")
    elif isinstance(features, str):
        body.append(f"<p class=\"note\" id=\"features\">{html.escape(features)}</p>")
    else:
        names, values, target = features
        order = np.argsort(-np.abs(values))[:10]
        towards = ("the decided class" if target == summary["decision"] else
                   f"class {target}, the first failure class (the decision is 0)")
        body.append(f"<table id=\"features\"><thead><tr><th>input</th><th>contribution to "
                    f"{towards} ({target})</th></tr></thead><tbody>" + "".join(
                        f"<tr><td>{html.escape(names[j])}</td><td class=\"number\">"
                        f"{values[j]:+.4f}</td></tr>" for j in order) + "</tbody></table>")
    return page(f"vehicle {vehicle}", "".join(body))


def _markdown(text: str) -> str:
    """The model card's small markdown: headings, paragraphs, **bold**, `code`."""
    blocks = []
    for block in re.split(r"\n\s*\n", text.strip()):
        escaped = html.escape(block)
        escaped = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", escaped)
        escaped = re.sub(r"`(.+?)`", r"<code>\1</code>", escaped)
        level = len(block) - len(block.lstrip("#"))
        blocks.append(f"<h{level + 1}>{escaped.lstrip('#').strip()}</h{level + 1}>" if level
                      else f"<p>{escaped}</p>")
    return "".join(blocks)


def model_page(meta: dict, card: str) -> str:
    """The model card: which candidate ships, from which commit and data, its metrics on
    validation and test with their intervals."""
    metrics = meta["metrics"]
    rows = "".join(
        f"<tr><th>{split}</th><td class=\"number\">{metrics[split]['cost_total']:,.0f}</td>"
        f"<td class=\"number\">{metrics[split]['cost_total_ci'][0]:,.0f}–"
        f"{metrics[split]['cost_total_ci'][1]:,.0f}</td>"
        f"<td class=\"number\">{metrics[split]['cost_always_0']:,.0f}</td>"
        f"<td class=\"number\">{metrics[split]['accuracy']:.3f}</td>"
        f"<td class=\"number\">{metrics[split]['macro_f1']:.3f}</td></tr>"
        for split in ("validation", "test"))
    code = meta["provenance"]["code"]
    return page("model card", _markdown(card) + (
        "<h3>Metrics</h3><table><thead><tr><th></th><th>total cost</th><th>95% interval</th>"
        "<th>always 0</th><th>accuracy</th><th>macro-F1</th></tr></thead>"
        f"<tbody>{rows}</tbody></table><p class=\"note\">componentx "
        f"{html.escape(str(code['version']))}, commit {html.escape(str(code['commit']))}; "
        f"data version {html.escape(str(meta['provenance']['data']['version']))}.</p>"))
