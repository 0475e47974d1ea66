"""The console script's entry point: a Ctrl-C while it imports the application is one line."""

from __future__ import annotations

import sys
import types

import pytest

import svcsim.cli


class _Interrupting(types.ModuleType):
    """A module whose attributes raise KeyboardInterrupt, as if Ctrl-C came mid-import."""

    def __getattr__(self, name: str) -> object:
        raise KeyboardInterrupt


def test_ctrl_c_while_starting_is_one_line_and_exit_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "svcsim.cli.main", _Interrupting("svcsim.cli.main"))
    with pytest.raises(SystemExit) as exit_info:
        svcsim.cli.entry()
    assert exit_info.value.code == 130
    assert capsys.readouterr().err == "interrupted; nothing was written\n"


def test_the_entry_point_runs_the_application(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["svcsim", "--help"])
    with pytest.raises(SystemExit) as exit_info:
        svcsim.cli.entry()
    assert exit_info.value.code == 0
    assert "Simulate the Kubernetes Service data plane" in capsys.readouterr().out
