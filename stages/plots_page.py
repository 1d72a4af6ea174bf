"""plots_page: the HTML template `dvc plots show` uses (.dvc/config plots.html_template), with
Vega inline from the installed vl-convert-python, so the page opens without a network."""

from pathlib import Path

from componentx.reports.offline_plots import page_template
from componentx.runtime import atomic_write_bytes, log, run_stage

OUT = Path("plots/page_template.html")


def main() -> None:
    atomic_write_bytes(OUT, page_template().encode("utf-8"))
    log.info("wrote %s (%.1f MB, Vega inline)", OUT, OUT.stat().st_size / 1e6)


if __name__ == "__main__":
    run_stage(main, "plots_page")
