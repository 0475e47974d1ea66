"""Node dumps for the `svcsim diff` tests: kube-proxy's rules for an edited cluster, as saved."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from svcsim.cli.main import app
from tests.netfilter.node_dumps import CLUSTER, NODE_ARGS

runner = CliRunner()


def cluster_text(edit: tuple[str, str] | None = None) -> str:
    """cluster.yaml, with one ``(old, new)`` text replacement (which must apply)."""
    text = CLUSTER.read_text()
    if edit is not None:
        assert edit[0] in text, edit
        text = text.replace(*edit)
    return text


def node_dump(tmp_path: Path, cluster: str, *flags: str, name: str = "node.save") -> Path:
    """``svcsim rules`` output for ``cluster`` on node-1, written where ``diff`` reads it."""
    manifests = tmp_path / f"{name}.yaml"
    manifests.write_text(cluster)
    result = runner.invoke(app, ["rules", str(manifests), *NODE_ARGS, *flags])
    assert result.exit_code == 0, result.stderr
    path = tmp_path / name
    path.write_text(result.stdout)
    return path


def run_diff(manifests: Path, dump: Path, *args: str) -> tuple[int, str, str]:
    """``svcsim diff`` on node-1 as the dumps were written; (exit code, stdout, stderr)."""
    result = runner.invoke(
        app, ["diff", str(manifests), *NODE_ARGS, "--iptables-save", str(dump), *args]
    )
    return result.exit_code, result.stdout, result.stderr
