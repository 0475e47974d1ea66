"""`svcsim rules` and `svcsim trace` on the seed article's manifests, as a user runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from svcsim.cli.main import app

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "seed-article"
NODE = ["--node", "node-1", "--cluster-cidr", "172.200.0.0/16"]
runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def saved() -> str:
    code, out, _ = run("rules", str(EXAMPLES), *NODE)
    assert code == 0
    return out


@pytest.mark.parametrize(
    "line",
    [
        # The article's three-endpoint chain, printed back from the stored thresholds.
        '-A KUBE-SVC-76GERFBRR2RGHNBJ -m comment --comment "default/ccs-gateway-clusterip:http -> '
        '172.200.6.224:80" -m statistic --mode random --probability 0.33333333349 '
        "-j KUBE-SEP-GBVECAZBIC3ZKMXB",
        # The article's masquerade rule for off-cluster sources.
        "-A KUBE-SVC-76GERFBRR2RGHNBJ ! -s 172.200.0.0/16 -d 10.100.160.92/32 -p tcp -m comment "
        '--comment "default/ccs-gateway-clusterip:http cluster IP" -m tcp --dport 30080 '
        "-j KUBE-MARK-MASQ",
        # No endpoints: REJECT in the filter table, with the article's comment.
        '-A KUBE-SERVICES -d 10.101.117.0/32 -p tcp -m comment --comment "default/fake-endpoint:80 '
        'has no endpoints" -m tcp --dport 80 -j REJECT --reject-with icmp-port-unreachable',
        # Selector-less Services: hand-made endpoints, inside and outside the cluster.
        '-A KUBE-SEP-MN57F6NGDN5G5KO7 -p tcp -m comment --comment "default/external-endpoint:http" '
        "-m tcp -j DNAT --to-destination 10.124.142.43:80",
        "-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0",
        "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000",
    ],
)
def test_rules_save_format_holds_the_articles_rules(saved: str, line: str) -> None:
    assert line in saved.splitlines()


def test_headless_and_externalname_services_write_nothing(saved: str) -> None:
    assert "my-headless-service" not in saved
    assert "prod/my-service" not in saved  # the ExternalName Service (a DNS CNAME only)


def test_restore_format_is_what_kube_proxy_writes() -> None:
    code, out, _ = run("rules", str(EXAMPLES), *NODE, "--format", "restore")
    assert code == 0
    assert out.startswith("*filter\n") and out.rstrip().endswith("COMMIT")
    assert "--probability 0.3333333333 -j KUBE-SEP-GBVECAZBIC3ZKMXB" in out
    assert "-j MARK --or-mark 0x00004000" in out
    assert ":PREROUTING" not in out  # built-in chains are not part of the restore input


def test_kubectl_dump_gives_the_same_rules_plus_the_kubernetes_service(saved: str) -> None:
    code, out, _ = run("rules", str(EXAMPLES / "kubectl"), *NODE)
    assert code == 0
    extra = set(out.splitlines()) - set(saved.splitlines())
    assert extra and all(
        "KUBE-SVC-NPX46M4PTMTKRN6Y" in x or "kubernetes:https" in x or x.startswith(":KUBE-")
        for x in extra
    )
    assert set(saved.splitlines()) <= set(out.splitlines())


def test_missing_cluster_cidr_warns_and_writes_no_masquerade_rule() -> None:
    code, out, err = run("rules", str(EXAMPLES), "--node", "node-1")
    assert code == 0
    assert "no --cluster-cidr" in err
    assert 'cluster IP" -m tcp --dport 30080 -j KUBE-MARK-MASQ' not in out


@pytest.mark.parametrize(
    ("dst", "verdict"),
    [
        ("10.101.117.0:80", "verdict: REJECT (icmp-port-unreachable)"),
        ("10.9.9.9:80", "no Service rule matched"),
        ("10.124.142.43:80", "no Service rule matched"),
    ],
)
def test_trace_verdicts(dst: str, verdict: str) -> None:
    code, out, _ = run("trace", str(EXAMPLES), *NODE, "--src", "172.200.6.21", "--dst", dst)
    assert code == 0
    assert verdict in out


def test_trace_clusterip_dnats_to_one_backend_and_seed_decides_which() -> None:
    backends = {"172.200.6.224:80", "172.200.6.91:80", "172.200.7.36:80"}
    seen = set()
    for seed in range(12):
        code, out, _ = run(
            "trace",
            str(EXAMPLES),
            *NODE,
            "--src",
            "172.200.6.21",
            "--dst",
            "10.100.160.92:30080",
            "--seed",
            str(seed),
        )
        assert code == 0
        verdict = out.splitlines()[-1]
        assert verdict.startswith("verdict: ACCEPT: forwarded to ") and "(DNAT)" in verdict
        seen.add(verdict.split()[4])
    assert seen == backends
    again = run(
        "trace",
        str(EXAMPLES),
        *NODE,
        "--src",
        "172.200.6.21",
        "--dst",
        "10.100.160.92:30080",
        "--seed",
        "3",
    )
    assert again == run(
        "trace",
        str(EXAMPLES),
        *NODE,
        "--src",
        "172.200.6.21",
        "--dst",
        "10.100.160.92:30080",
        "--seed",
        "3",
    )


def test_trace_external_nodeport_is_masqueraded() -> None:
    code, out, _ = run(
        "trace", str(EXAMPLES), *NODE, "--src", "203.0.113.7", "--dst", "192.168.0.11:30081"
    )
    assert code == 0
    assert "from external" in out.splitlines()[0]
    assert "(DNAT), masqueraded" in out.splitlines()[-1]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--src", "1.2.3", "--dst", "10.0.0.1:80x"],
            [
                "--dst: '10.0.0.1:80x' is not IP:PORT[/tcp|udp|sctp]",
                "--src: '1.2.3' is not an IPv4 address",
            ],
        ),
        (
            ["--src", "10.0.0.1", "--dst", "10.0.0.1:80/icmp"],
            ["--dst: protocol 'icmp' is not tcp, udp or sctp"],
        ),
    ],
)
def test_trace_bad_addresses_exit_2_one_line_each(args: list[str], expected: list[str]) -> None:
    code, out, err = run("trace", str(EXAMPLES), *NODE, *args)
    assert code == 2
    assert out == ""
    assert err.splitlines() == expected


def test_bad_manifest_reports_file_line_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "svc.yaml"
    bad.write_text(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  ports:\n"
        "  - port: 70000\n    protocol: TCPX\n"
    )
    code, out, err = run("rules", str(bad), "--node", "n", "--node-ip", "10.0.0.1")
    assert code == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 2
    assert all(
        line.startswith(f"{bad}:") and "Service/default/web: spec.ports[0]." in line
        for line in lines
    )
    assert ":7: " in lines[0] and ":8: " in lines[1]


def test_unknown_node_without_ip_is_a_clear_error() -> None:
    code, _, err = run("rules", str(EXAMPLES), "--node", "node-9")
    assert code == 2
    assert err.strip().startswith("--node-ip: node 'node-9' has no InternalIP")


def test_rules_writers_start_without_numpy() -> None:
    # iptables, nftables and ipvs rules only encode thresholds: numpy (~0.1 s to import) is
    # left to the commands that draw (userspace mode draws its proxy ports). Files, not the
    # folder: a folder may be a run folder, and telling that imports the simulator.
    files = [str(p) for p in sorted(EXAMPLES.glob("*.yaml"))]
    code = (
        "import sys; from typer.testing import CliRunner; from svcsim.cli.main import app; "
        f"args = ['rules', *{files!r}, '--node', 'node-1']; "
        "codes = [CliRunner().invoke(app, [*args, '--mode', m]).exit_code "
        "for m in ('iptables', 'nftables', 'ipvs')]; "
        "print(codes, 'numpy' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[0, 0, 0] False"
