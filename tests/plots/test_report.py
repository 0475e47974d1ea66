"""The HTML report: self-contained, well formed, escaped, and carrying the summary numbers."""

from __future__ import annotations

import base64
import dataclasses
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from svcsim.plots import FIGURES
from svcsim.report import render_report, scenario_name, summary_tables, write_report
from svcsim.report.tables import MAX_WINDOW_ROWS, window_table
from svcsim.results import Run

VOID = {"meta", "img", "br", "hr", "link", "input"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class _Checker(HTMLParser):
    """Collects tags; fails on a closing tag that does not match the open one."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.images: list[dict[str, str | None]] = []
        self.attrs_with_urls: list[str] = []
        self.text: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "img":
            self.images.append(dict(attrs))
        for name, value in attrs:
            if name in ("src", "href") and value is not None:
                self.attrs_with_urls.append(value)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:]}")
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _check(page: str) -> _Checker:
    checker = _Checker()
    checker.feed(page)
    checker.close()
    assert checker.errors == []
    assert checker.stack == []
    return checker


@pytest.fixture(scope="module")
def page(rolling_run: Run, rolling_pngs: dict[str, bytes]) -> str:
    return render_report(rolling_run, rolling_pngs)


def test_report_is_well_formed_and_self_contained(page: str) -> None:
    assert page.startswith('<!DOCTYPE html>\n<html lang="en">')
    checker = _check(page)
    assert checker.tags.count("html") == 1 and checker.tags.count("style") == 1
    assert "script" not in checker.tags and "link" not in checker.tags
    assert all(url.startswith("data:image/png;base64,") for url in checker.attrs_with_urls)
    assert "http://" not in page and "https://" not in page
    assert len(checker.images) == len(FIGURES)
    for image in checker.images:
        src = image["src"] or ""
        data = base64.b64decode(src.removeprefix("data:image/png;base64,"), validate=True)
        assert data.startswith(PNG_SIGNATURE)
        assert image["alt"]


def test_report_carries_the_summary(page: str, rolling_run: Run) -> None:
    summary = rolling_run.summary
    total, failed = summary["requests"]["total"], summary["requests"]["failed"]
    text = " ".join(_check(page).text)
    assert f"{total:,} request attempts" in text
    assert f"{failed:,} failed ({100 * failed / total:.2f} %)" in text
    for outcome, n in summary["requests"]["by_outcome"].items():
        assert re.search(rf"<td>{outcome}</td><td class=\"num\">{n:,}</td>", page)
    for cause, n in summary["requests"]["by_cause"].items():
        assert f'<td>{cause}</td><td class="num">{n:,}</td>' in page
    # one row per failure window, with its service, node, times, count and cause
    windows = re.search(r'<h3 id="windows">.*?</table>', page, re.S)
    assert windows is not None
    rows = re.findall(r"<tr><td>", windows.group(0))
    assert len(rows) == len(rolling_run.windows) == len(summary["failure_windows"])
    first = summary["failure_windows"][0]
    assert (
        f"<td>{first['service']}</td><td>{first['node']}</td>"
        f'<td class="num">{first["start_s"]:.3f}</td>'
    ) in windows.group(0)
    assert "proxy-down" in windows.group(0)
    # uniformity p-values and programming latency per node
    for service, u in summary["uniformity"].items():
        assert f"{u['p_value']:.4g}" in page and service in page
    for node, lat in summary["programming_latency"].items():
        assert f"<td>{node}</td>" in page
        assert f"{lat['max_s']:.3f}" in page
    assert "web-new-0 (10.244.1.16:80)" in page
    for spec in FIGURES:
        assert spec.title in text


def test_report_escapes_text_from_the_run(page: str, rolling_run: Run) -> None:
    # The synthetic description holds an apostrophe, "&" and "<during>".
    assert "&lt;during&gt;" in page and "&amp; restarts" in page
    assert "<during>" not in page
    hostile = dataclasses.replace(
        rolling_run,
        manifest={
            **rolling_run.manifest,
            "scenario": {"metadata": {"name": "<script>alert(1)</script>", "description": ""}},
            "exception": "KeyboardInterrupt('<b>')",
        },
    )
    html = render_report(hostile, figures={})
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "KeyboardInterrupt(&#x27;&lt;b&gt;&#x27;)" in html
    _check(html)


def test_report_of_a_run_without_requests(empty_run: Run) -> None:
    html = render_report(empty_run, figures={})
    checker = _check(html)
    text = " ".join(checker.text)
    assert "0 request attempts" in text
    assert "no failure windows: every attempt succeeded" in text
    assert not checker.images


def test_report_without_failures(quiet_run: Run) -> None:
    text = " ".join(_check(render_report(quiet_run, figures={})).text)
    assert "0 failed (0.00 %)" in text
    assert "no failed attempts" in text


def test_scenario_name_falls_back_to_the_folder(rolling_run: Run) -> None:
    assert scenario_name(rolling_run) == "synthetic-rolling-update"
    bare = dataclasses.replace(rolling_run, manifest={"run_format": 1})
    assert scenario_name(bare) == rolling_run.path.name


def test_long_window_lists_are_cut_with_a_note(rolling_run: Run) -> None:
    many = rolling_run.windows.loc[[0] * (MAX_WINDOW_ROWS + 5)].reset_index(drop=True)
    table = window_table(dataclasses.replace(rolling_run, windows=many))
    assert len(table.rows) == MAX_WINDOW_ROWS
    assert table.note.startswith("5 more windows not shown")


def test_every_table_has_its_headers(rolling_run: Run) -> None:
    for table in summary_tables(rolling_run):
        assert table.key and table.title
        assert all(len(row) == len(table.headers) == len(table.numeric) for row in table.rows)


def test_write_report_is_atomic_and_readable(rolling_run: Run, tmp_path: Path) -> None:
    target = tmp_path / "out" / "r.html"
    written = write_report(rolling_run, target, figures={})
    assert written == target
    assert target.read_text(encoding="utf-8").endswith("</html>\n")
    assert [p.name for p in target.parent.iterdir()] == ["r.html"]


def test_run_facts_have_human_labels(rolling_run: Run) -> None:
    manifest = {
        **rolling_run.manifest,
        "run_format": 2,
        "wall_time_s": 1.5,
        "scenario_path": "scenarios/x.yaml",
        "versions": {"svcsim": "0.1.0", "numpy": "2.4.6", "python": "3.11.7"},
        "random_streams": ["a", "b"],
        "proxy_mode": "nftables",
    }
    page = render_report(dataclasses.replace(rolling_run, manifest=manifest), {})
    meta = page.split('<dl class="meta">')[1].split("</dl>")[0]
    for raw in ("run_format", "versions.", "wall_time_s", "scenario_path", "random_streams"):
        assert raw not in meta
    for label, value in [
        ("run folder format", "2"),
        ("wall-clock time", "1.5 s"),
        ("scenario file", "scenarios/x.yaml"),
        ("versions", "svcsim 0.1.0, numpy 2.4.6, python 3.11.7"),
        ("kube-proxy mode", "nftables"),
    ]:
        assert f"<dt>{label}</dt><dd>{value}</dd>" in meta


@pytest.mark.parametrize(
    ("part", "whole", "text"),
    [
        (22, 540_999, "< 0.01 %"),
        (0, 10, "0.00 %"),
        (1, 3, "33.33 %"),
        (5, 0, "-"),
        (1, 1, "100.00 %"),
    ],
)
def test_a_share_that_is_not_zero_never_reads_as_zero(part: int, whole: int, text: str) -> None:
    from svcsim.report.tables import percent

    assert percent(part, whole) == text


def test_table_cells_do_not_wrap_and_wide_tables_scroll(page: str) -> None:
    assert "td { white-space: nowrap; }" in page
    assert page.count('<div class="scroll"><table>') == page.count("<table>")
