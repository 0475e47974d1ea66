"""Open an HTML page in real headless Chromium and report what a reader's browser saw.

A probe script is put first in the page's ``<head>`` (of a copy): it records script errors,
``console.error`` calls and resources that failed to load, and once the page has loaded it
writes them, with every image's ``naturalWidth``, into the DOM as JSON, which ``--dump-dom``
prints. Chromium's own console log (``--enable-logging=stderr``) is collected as well.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Final

CHROMIUM_NAMES: Final = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
"""Executables tried, in order (Debian's package is ``chromium``)."""

TIMEOUT_S: Final = 120.0
"""Upper bound for one page load (a slow, shared machine)."""

_FLAGS: Final = (
    "--headless",
    "--no-sandbox",  # tests run as root in containers, where the sandbox cannot start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
)

_PROBE_ID: Final = "svcsim-browser-probe"
_PROBE: Final = f"""<script>
(function () {{
  var problems = [];
  window.addEventListener("error", function (e) {{
    var target = e.target && e.target !== window ? (e.target.src || e.target.href || "") : "";
    problems.push(target ? "failed to load " + target.slice(0, 80) : String(e.message));
  }}, true);
  var original = console.error;
  console.error = function () {{
    problems.push("console.error: " + Array.prototype.join.call(arguments, " "));
    original.apply(console, arguments);
  }};
  window.addEventListener("load", function () {{
    var images = Array.prototype.map.call(document.images, function (img) {{
      return {{alt: img.alt, natural_width: img.naturalWidth, complete: img.complete}};
    }});
    var out = document.createElement("pre");
    out.id = "{_PROBE_ID}";
    out.textContent = JSON.stringify({{problems: problems, images: images}});
    document.body.appendChild(out);
  }});
}})();
</script>"""
_CONSOLE_LINE: Final = re.compile(r":CONSOLE(?::\d+)?\]\s*(.*)")


@dataclass(frozen=True, slots=True)
class LoadedImage:
    """One ``<img>`` as the browser decoded it (``natural_width`` 0: it did not load)."""

    alt: str
    natural_width: int
    complete: bool


@dataclass(frozen=True, slots=True)
class BrowserView:
    """What Chromium saw: the page's images, its script/load problems and console lines."""

    images: tuple[LoadedImage, ...]
    problems: tuple[str, ...]
    console: tuple[str, ...]


def find_chromium() -> str | None:
    """Path of a Chromium-like browser on PATH, or None."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def view_in_chromium(page: Path, workdir: Path, browser: str) -> BrowserView:
    """Load ``page`` (a copy with the probe) in headless ``browser`` and return what it saw."""
    text = page.read_text(encoding="utf-8")
    if "<head>" not in text:
        raise ValueError(f"{page}: no <head> to put the probe in")
    probed = workdir / f"probed-{page.name}"
    probed.write_text(text.replace("<head>", f"<head>\n{_PROBE}", 1), encoding="utf-8")
    done = subprocess.run(
        [
            browser,
            *_FLAGS,
            f"--user-data-dir={workdir / 'profile'}",
            "--dump-dom",
            probed.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    match = re.search(rf'<pre id="{_PROBE_ID}">(.*?)</pre>', done.stdout, re.DOTALL)
    if match is None:
        raise AssertionError(
            f"{browser} printed no probe result (exit {done.returncode}): {done.stderr[-2000:]}"
        )
    result = json.loads(_unescape(match.group(1)))
    console = tuple(m.group(1) for m in map(_CONSOLE_LINE.search, done.stderr.splitlines()) if m)
    return BrowserView(
        images=tuple(
            LoadedImage(str(i["alt"]), int(i["natural_width"]), bool(i["complete"]))
            for i in result["images"]
        ),
        problems=tuple(result["problems"]),
        console=console,
    )


def _unescape(html_text: str) -> str:
    """Text content as ``--dump-dom`` serialises it (``&amp;``, ``&lt;``, ``&gt;`` escaped)."""
    return html_text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
