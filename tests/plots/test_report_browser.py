"""The HTML report opened in a real browser: every figure decodes, no script or load errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from svcsim.plots import FIGURES
from svcsim.report import write_report
from svcsim.results import Run
from tests.plots.browser import find_chromium, view_in_chromium

CHROMIUM = find_chromium()

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium on PATH (apt-get install chromium; `make test` installs it as root)",
)


@pytest.mark.parametrize("name", ["rolling_run", "quiet_run", "empty_run"])
def test_every_figure_loads_and_the_page_has_no_errors(
    name: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    assert CHROMIUM is not None
    run: Run = request.getfixturevalue(name)
    page = write_report(run, tmp_path / "report.html")
    seen = view_in_chromium(page, tmp_path, CHROMIUM)
    assert seen.problems == ()
    assert seen.console == ()
    titles = {spec.title for spec in FIGURES}
    assert seen.images, "the report shows no figure"
    assert {image.alt for image in seen.images} <= titles
    broken = [image.alt for image in seen.images if image.natural_width <= 0]
    assert broken == []


def test_the_probe_sees_a_broken_figure(rolling_run: Run, tmp_path: Path) -> None:
    # The check above could pass vacuously; a corrupt PNG must show up as not loaded.
    assert CHROMIUM is not None
    page = write_report(rolling_run, tmp_path / "report.html")
    text = page.read_text(encoding="utf-8")
    page.write_text(text.replace("data:image/png;base64,", "data:image/png;base64,AAAA", 1))
    seen = view_in_chromium(page, tmp_path, CHROMIUM)
    assert [image.natural_width for image in seen.images].count(0) == 1
    assert any("failed to load" in p for p in seen.problems)
