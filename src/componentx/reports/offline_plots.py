"""Plots that open without a network.

``dvc plots show`` writes a page that loads Vega from a CDN. :func:`page_template` is an HTML
template for DVC (``plots.html_template``) with Vega, Vega-Lite and Vega-Embed inline, taken
from the installed ``vl-convert-python`` package; :func:`render` writes that page and a PNG of
every plot of ``dvc.yaml``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from componentx.errors import UserError

# Vega-Embed as DVC's plot divs call it, drawing SVG (crisp, and visible in the page's DOM).
_EMBED = ("window.vega = vega; window.vegaLite = vegaLite; window.vegaEmbed = (element, spec, "
          "options) => vegaEmbed(element, spec, Object.assign({renderer: 'svg', actions: "
          "false}, options || {}));")


def page_template() -> str:
    """A DVC HTML template (``{plot_divs}``) with every script inline and no ``{scripts}``,
    so DVC adds no CDN links."""
    import vl_convert

    bundle = vl_convert.javascript_bundle(_EMBED)
    if "{plot_divs}" in bundle or "{scripts}" in bundle:
        raise RuntimeError("the Vega bundle contains a DVC template placeholder")
    return ("<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n"
            "<title>componentx plots</title>\n"
            f"<script>\n{bundle}\n</script>\n"
            "<style>body { font-family: sans-serif; } div { margin: 12px; }</style>\n"
            "</head>\n<body>\n{plot_divs}\n</body>\n</html>\n")


def _dvc(*args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "dvc", *args], capture_output=True,
                            text=True)
    if result.returncode != 0:
        raise UserError(f"dvc {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def _file_name(plot_id: str) -> str:
    stem = re.sub(r"\.(png|jpe?g|gif|svg)$", "", plot_id, flags=re.IGNORECASE)
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("_") or "plot"


def render(out: Path) -> tuple[Path, list[Path]]:
    """``out/index.html`` with Vega inline, and ``out/png/<plot>.png`` for every plot."""
    import vl_convert

    out = Path(out)
    with tempfile.TemporaryDirectory() as tmp:
        template = Path(tmp) / "template.html"
        template.write_text(page_template(), encoding="utf-8")
        _dvc("plots", "show", "--html-template", str(template), "-o", str(out))
    pngs = out / "png"
    if pngs.exists():
        shutil.rmtree(pngs)
    pngs.mkdir(parents=True)
    written = []
    for plot_id, renderings in json.loads(_dvc("plots", "show", "--json"))["data"].items():
        for number, rendering in enumerate(renderings):
            target = pngs / f"{_file_name(plot_id)}{f'_{number}' if number else ''}.png"
            if rendering["type"] == "vega":
                target.write_bytes(vl_convert.vegalite_to_png(rendering["content"], scale=1.5))
            elif rendering["type"] == "image" and Path(plot_id).is_file():
                shutil.copy(plot_id, target)
            else:
                continue
            written.append(target)
    return out / "index.html", written
