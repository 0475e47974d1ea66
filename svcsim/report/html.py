"""One self-contained HTML page per run: summary tables, failure windows, figures.

The page has no external resource: CSS is inline and the figures are embedded as base64 PNG
(``data:`` URIs), so it can be mailed or attached to a ticket and opened anywhere. Every piece
of text from the run (names, descriptions, causes) goes through :func:`html.escape`.
"""

from __future__ import annotations

import base64
import html
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from svcsim.plots import FIGURES, render_all
from svcsim.report.tables import Table, count, percent, summary_tables
from svcsim.results import Run
from svcsim.results.layout import REPORT

REPORT_NAME: Final = REPORT
"""File name ``svcsim report`` writes inside the run folder by default."""

_CSS: Final = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
       color: #1a1a1a; background: #fff; line-height: 1.45; }
main { max-width: 1240px; margin: 0 auto; padding: 1.5rem 2rem 3rem; }
h1 { font-size: 1.6rem; margin: 0 0 .3rem; }
h2 { font-size: 1.25rem; margin: 2rem 0 .6rem; border-bottom: 1px solid #ddd; }
h3 { font-size: 1.05rem; margin: 1.4rem 0 .4rem; }
p.description { margin: .2rem 0 1rem; color: #333; }
.headline { font-size: 1.1rem; margin: .8rem 0; }
.headline strong.bad { color: #a33a00; }
.headline strong.good { color: #00704f; }
.warning { border-left: 4px solid #D55E00; background: #fff3ec; padding: .5rem .8rem; }
div.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: .3rem 0 .6rem; font-size: .9rem; }
td { white-space: nowrap; }
th, td { padding: .25rem .6rem; border-bottom: 1px solid #e4e4e4; text-align: left;
         vertical-align: top; }
th { background: #f4f4f4; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #fafafa; }
p.note, p.empty { color: #555; font-size: .9rem; margin: .2rem 0 .8rem; }
figure { margin: 1rem 0 2rem; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #333; font-size: .9rem; margin-top: .3rem; max-width: 60rem; }
dl.meta { display: grid; grid-template-columns: max-content auto; gap: .15rem 1rem;
          font-size: .9rem; margin: .5rem 0; }
dl.meta dt { color: #555; }
dl.meta dd { margin: 0; font-family: ui-monospace, monospace; }
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _scenario(run: Run) -> Mapping[str, Any]:
    scenario = run.manifest.get("scenario")
    return scenario if isinstance(scenario, Mapping) else {}


def scenario_name(run: Run) -> str:
    """The scenario's ``metadata.name``, else the run folder's name."""
    metadata = _scenario(run).get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    return str(name) if name else run.path.name


def _description(run: Run) -> str:
    metadata = _scenario(run).get("metadata")
    text = metadata.get("description") if isinstance(metadata, Mapping) else None
    return str(text) if text else ""


META_LABELS: Final[Mapping[str, str]] = {
    "proxy_mode": "kube-proxy mode",
    "duration_s": "simulated duration",
    "scenario_path": "scenario file",
    "wall_time_s": "wall-clock time",
    "versions": "versions",
    "run_format": "run folder format",
}
"""Header labels for manifest keys, in the order shown; others follow with ``_`` as spaces."""

_META_SKIPPED: Final = frozenset(("scenario", "seed", "exception", "name", "description"))
"""Manifest keys shown elsewhere on the page (title, description, warning) or not at all."""


def _label(key: str) -> str:
    return META_LABELS.get(key, key.replace("_", " "))


def _meta_value(key: str, value: object) -> str:
    if key.endswith("_s") and isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:g} s"
    if key == "versions" and isinstance(value, Mapping):
        # One line: "svcsim 0.1.0, simpy 4.1.2, numpy 2.4.6, python 3.11.7".
        first = [k for k in ("svcsim", "simpy", "numpy", "python") if k in value]
        order = first + sorted(set(value) - set(first))
        return ", ".join(f"{k} {value[k]}" for k in order if not isinstance(value[k], Mapping))
    return str(value)


def _meta_items(run: Run) -> list[tuple[str, str]]:
    """Run facts for the header, labelled for people: seed, duration, file, versions, ..."""
    manifest = run.manifest
    scenario = _scenario(run)
    seed = manifest.get("seed", run.summary.get("seed", scenario.get("seed")))
    items = [("run folder", run.path.name), ("seed", "drawn, not recorded" if seed is None
                                                    else str(seed))]  # fmt: skip
    if "duration_s" not in manifest and "duration" in scenario:
        items.append((_label("duration_s"), str(scenario["duration"])))
    order = list(META_LABELS)
    for key in sorted(manifest, key=lambda k: (order.index(k) if k in order else len(order), k)):
        value = manifest[key]
        if key in _META_SKIPPED or isinstance(value, list):
            continue
        if isinstance(value, Mapping) and key != "versions":
            items.extend(
                (f"{_label(key)}: {_label(sub)}", _meta_value(sub, inner))
                for sub, inner in sorted(value.items())
                if not isinstance(inner, Mapping | list)
            )
        else:
            items.append((_label(key), _meta_value(key, value)))
    return items


def _table_html(table: Table) -> str:
    parts = [f'<h3 id="{_e(table.key)}">{_e(table.title)}</h3>']
    if not table.rows:
        parts.append(f'<p class="empty">{_e(table.empty)}</p>')
        return "\n".join(parts)

    def cell(tag: str, text: str, numeric: bool) -> str:
        return f'<{tag} class="num">{_e(text)}</{tag}>' if numeric else f"<{tag}>{_e(text)}</{tag}>"

    head = "".join(cell("th", h, n) for h, n in zip(table.headers, table.numeric, strict=True))
    body = "\n".join(
        "<tr>"
        + "".join(cell("td", c, n) for c, n in zip(row, table.numeric, strict=True))
        + "</tr>"
        for row in table.rows
    )
    # Cells never wrap ("node-\n2" reads as two things); a narrow window scrolls the table.
    parts.append(
        f'<div class="scroll"><table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n'
        "</tbody>\n</table></div>"
    )
    if table.note:
        parts.append(f'<p class="note">{_e(table.note)}</p>')
    return "\n".join(parts)


def _headline(run: Run) -> str:
    requests = run.summary.get("requests", {})
    total = int(requests.get("total", len(run.requests)))
    failed = int(requests.get("failed", 0))
    windows = len(run.windows)
    state = "bad" if failed else "good"
    return (
        f'<p class="headline">{_e(count(total))} request attempts, '
        f'<strong class="{state}">{_e(count(failed))} failed ({_e(percent(failed, total))})'
        f"</strong> in {_e(count(windows))} failure window{'' if windows == 1 else 's'}.</p>"
    )


def render_report(run: Run, figures: Mapping[str, bytes] | None = None) -> str:
    """The report page of ``run`` as HTML text.

    ``figures`` maps figure names (:data:`svcsim.plots.FIGURES`) to PNG bytes; by default
    they are drawn from the run (:func:`svcsim.plots.render_all`). Figures missing from the
    mapping are left out.
    """
    pictures = render_all(run) if figures is None else figures
    name = scenario_name(run)
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>svcsim report: {_e(name)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        "<main>",
        f"<h1>svcsim run: {_e(name)}</h1>",
    ]
    description = _description(run)
    if description:
        out.append(f'<p class="description">{_e(description)}</p>')
    exception = run.manifest.get("exception")
    if exception:
        out.append(f'<p class="warning">The run ended with an exception: {_e(exception)}</p>')
    meta = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in _meta_items(run))
    out.append(f'<dl class="meta">{meta}</dl>')
    out.append(_headline(run))
    out.append("<h2>Summary</h2>")
    out.extend(_table_html(table) for table in summary_tables(run))
    shown = [spec for spec in FIGURES if spec.name in pictures]
    if shown:
        out.append("<h2>Figures</h2>")
    for spec in shown:
        data = base64.b64encode(pictures[spec.name]).decode("ascii")
        out.extend(
            [
                f'<figure id="fig-{_e(spec.name)}">',
                f"<h3>{_e(spec.title)}</h3>",
                f'<img src="data:image/png;base64,{data}" alt="{_e(spec.title)}">',
                f"<figcaption>{_e(spec.caption)}</figcaption>",
                "</figure>",
            ]
        )
    out.extend(["</main>", "</body>", "</html>", ""])
    return "\n".join(out)


def write_report(
    run: Run, path: str | os.PathLike[str], figures: Mapping[str, bytes] | None = None
) -> Path:
    """Write :func:`render_report` to ``path`` (atomically: temporary file, then rename)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    text = render_report(run, figures)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
