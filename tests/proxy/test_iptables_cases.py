# ruff: noqa: E501 -- expected outputs hold verbatim iptables lines, which cannot be wrapped.
"""Hand-written expected restore input for the main shapes of service, with the real binary's
settings (mark ``0x00004000``, ``--random-fully``, nfacct counters present).

The expected texts are derived by hand from ``syncProxyRules`` (proxier.go @531be812); chain
names come from :mod:`svcsim.proxy.names`, whose hashes are checked against upstream vectors in
test_names.py. :func:`service_lines` drops the lines every sync writes (compiled with no
Services), leaving each service's own lines in kube-proxy's write order, tagged by table.
"""

from __future__ import annotations

from svcsim.k8s.objects import (
    EndpointSlice,
    LoadBalancerIngress,
    Protocol,
    Service,
    ServicePort,
    ServiceType,
    SessionAffinity,
    TrafficPolicy,
)
from svcsim.netfilter.text import render_save
from svcsim.proxy.context import NodeContext
from svcsim.proxy.iptables import compile_iptables_sync
from svcsim.proxy.names import ServicePortName
from tests.proxy.test_iptables_support import dedent, ep, make_service, make_slice, port

CTX = NodeContext.with_cluster_cidr("node-a", "10.244.0.0/16", node_ips=("192.168.0.10",))
WEB = ServicePortName("default", "web", "http", Protocol.TCP)
SVC, SVL, EXT, FW = WEB.cluster_chain, WEB.local_chain, WEB.external_chain, WEB.firewall_chain
HTTP = (port(8080, "http"),)


def sep(ip: str) -> str:
    return WEB.endpoint_chain(f"{ip}:8080")


def web(**spec: object) -> Service:
    spec.setdefault("ports", (ServicePort(80, name="http", target_port=8080),))
    return make_service("default", "web", cluster_ip="10.96.0.10", **spec)  # type: ignore[arg-type]


def web_slice(*endpoints: object) -> EndpointSlice:
    return make_slice("default", "web", tuple(endpoints), HTTP)  # type: ignore[arg-type]


def _tagged_lines(text: str, prefix: str) -> list[str]:
    out, table = [], ""
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith(prefix):
            out.append(f"{table}: {line}")
    return out


def service_lines(
    services: list[Service], slices: list[EndpointSlice], ctx: NodeContext = CTX, prefix: str = "-A"
) -> list[str]:
    """The service-specific rule lines (or, with ``prefix=":"``, chain lines), tagged by table."""
    fixed = set(_tagged_lines(compile_iptables_sync([], [], ctx).restore_text, prefix))
    text = compile_iptables_sync(services, slices, ctx).restore_text
    return [line for line in _tagged_lines(text, prefix) if line not in fixed]


def by_table(lines: list[str]) -> list[str]:
    """Expected lines in program order, regrouped as the restore text has them: filter first."""
    return sorted(lines, key=lambda line: not line.startswith("filter:"))


def service_chains(services: list[Service], slices: list[EndpointSlice]) -> list[str]:
    """The service-specific nat chains, in declaration order."""
    return [line.split()[1][1:] for line in service_lines(services, slices, prefix=":")]


def sep_lines(ip: str, affinity: bool = False) -> list[str]:
    recent = f"-m recent --name {sep(ip)} --set " if affinity else ""
    return [
        f"nat: -A {sep(ip)} -m comment --comment default/web:http -s {ip} -j KUBE-MARK-MASQ",
        f"nat: -A {sep(ip)} -m comment --comment default/web:http {recent}-m tcp -p tcp "
        f"-j DNAT --to-destination {ip}:8080",
    ]


CLUSTER_IP_RULE = (
    f'nat: -A KUBE-SERVICES -m comment --comment "default/web:http cluster IP" -m tcp -p tcp '
    f"-d 10.96.0.10 --dport 80 -j {SVC}"
)
MASQ_OFF_CLUSTER = (
    '-m comment --comment "default/web:http cluster IP" -m tcp -p tcp -d 10.96.0.10 --dport 80 '
    "! -s 10.244.0.0/16 -j KUBE-MARK-MASQ"
)


def test_cluster_ip_three_endpoints_full_restore_text() -> None:
    """Whole input; endpoints sort as strings, so 10.244.10.3 sits between .1.5 and .2.7."""
    sync = compile_iptables_sync(
        [web()], [web_slice(ep("10.244.2.7"), ep("10.244.1.5"), ep("10.244.10.3"))], CTX
    )
    s1, s2, s3 = sep("10.244.1.5"), sep("10.244.10.3"), sep("10.244.2.7")
    expected = dedent(f"""
        *filter
        :KUBE-SERVICES - [0:0]
        :KUBE-EXTERNAL-SERVICES - [0:0]
        :KUBE-FORWARD - [0:0]
        :KUBE-NODEPORTS - [0:0]
        :KUBE-PROXY-FIREWALL - [0:0]
        :KUBE-FIREWALL - [0:0]
        -A KUBE-FIREWALL -m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
        -A KUBE-FORWARD -m conntrack --ctstate INVALID -m nfacct --nfacct-name ct_state_invalid_dropped_pkts -j DROP
        -A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x00004000/0x00004000 -j ACCEPT
        -A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
        COMMIT
        *nat
        :KUBE-SERVICES - [0:0]
        :KUBE-NODEPORTS - [0:0]
        :KUBE-POSTROUTING - [0:0]
        :KUBE-MARK-MASQ - [0:0]
        :{SVC} - [0:0]
        :{s1} - [0:0]
        :{s2} - [0:0]
        :{s3} - [0:0]
        -A KUBE-POSTROUTING -m mark ! --mark 0x00004000/0x00004000 -j RETURN
        -A KUBE-POSTROUTING -j MARK --xor-mark 0x00004000
        -A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
        -A KUBE-MARK-MASQ -j MARK --or-mark 0x00004000
        -A KUBE-SERVICES -m comment --comment "default/web:http cluster IP" -m tcp -p tcp -d 10.96.0.10 --dport 80 -j {SVC}
        -A {SVC} {MASQ_OFF_CLUSTER}
        -A {SVC} -m comment --comment "default/web:http -> 10.244.1.5:8080" -m statistic --mode random --probability 0.3333333333 -j {s1}
        -A {SVC} -m comment --comment "default/web:http -> 10.244.10.3:8080" -m statistic --mode random --probability 0.5000000000 -j {s2}
        -A {SVC} -m comment --comment "default/web:http -> 10.244.2.7:8080" -j {s3}
        -A {s1} -m comment --comment default/web:http -s 10.244.1.5 -j KUBE-MARK-MASQ
        -A {s1} -m comment --comment default/web:http -m tcp -p tcp -j DNAT --to-destination 10.244.1.5:8080
        -A {s2} -m comment --comment default/web:http -s 10.244.10.3 -j KUBE-MARK-MASQ
        -A {s2} -m comment --comment default/web:http -m tcp -p tcp -j DNAT --to-destination 10.244.10.3:8080
        -A {s3} -m comment --comment default/web:http -s 10.244.2.7 -j KUBE-MARK-MASQ
        -A {s3} -m comment --comment default/web:http -m tcp -p tcp -j DNAT --to-destination 10.244.2.7:8080
        -A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
        COMMIT
        """)
    assert sync.restore_text == expected
    # The kernel keeps 31-bit thresholds; iptables-save prints them back with 11 decimals.
    saved = render_save(sync.ruleset)
    assert (
        f'-A {SVC} -m comment --comment "default/web:http -> 10.244.1.5:8080" -m statistic --mode random --probability 0.33333333349 -j {s1}'
        in saved
    )
    assert "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000" in saved


def test_node_port() -> None:
    svc = web(
        type=ServiceType.NODE_PORT,
        ports=(ServicePort(80, name="http", target_port=8080, node_port=30080),),
    )
    assert service_lines([svc], [web_slice(ep("10.244.1.5"))]) == by_table(
        [
            CLUSTER_IP_RULE,
            "nat: -A KUBE-NODEPORTS -m comment --comment default/web:http -m tcp -p tcp -d 127.0.0.0/8 "
            f"--dport 30080 -m nfacct --nfacct-name localhost_nps_accepted_pkts -j {EXT}",
            f"nat: -A KUBE-NODEPORTS -m comment --comment default/web:http -m tcp -p tcp --dport 30080 -j {EXT}",
            f"nat: -A {SVC} {MASQ_OFF_CLUSTER}",
            f'nat: -A {EXT} -m comment --comment "masquerade traffic for default/web:http external '
            'destinations" -j KUBE-MARK-MASQ',
            f"nat: -A {EXT} -j {SVC}",
            f'nat: -A {SVC} -m comment --comment "default/web:http -> 10.244.1.5:8080" -j {sep("10.244.1.5")}',
            *sep_lines("10.244.1.5"),
        ]
    )


def test_load_balancer_with_source_ranges_containing_the_node() -> None:
    svc = web(
        type=ServiceType.LOAD_BALANCER,
        ports=(ServicePort(80, name="http", target_port=8080, node_port=30080),),
        load_balancer_ingress=(LoadBalancerIngress(ip="198.51.100.7"),),
        load_balancer_source_ranges=("192.168.0.0/24", "203.0.113.0/25"),
    )
    lb_comment = '-m comment --comment "default/web:http loadbalancer IP"'
    assert service_lines([svc], [web_slice(ep("10.244.1.5"))]) == by_table(
        [
            CLUSTER_IP_RULE,
            f"nat: -A KUBE-SERVICES {lb_comment} -m tcp -p tcp -d 198.51.100.7 --dport 80 -j {FW}",
            'filter: -A KUBE-PROXY-FIREWALL -m comment --comment "default/web:http traffic not accepted '
            f'by {FW}" -m tcp -p tcp -d 198.51.100.7 --dport 80 -j DROP',
            "nat: -A KUBE-NODEPORTS -m comment --comment default/web:http -m tcp -p tcp -d 127.0.0.0/8 "
            f"--dport 30080 -m nfacct --nfacct-name localhost_nps_accepted_pkts -j {EXT}",
            f"nat: -A KUBE-NODEPORTS -m comment --comment default/web:http -m tcp -p tcp --dport 30080 -j {EXT}",
            f"nat: -A {SVC} {MASQ_OFF_CLUSTER}",
            f'nat: -A {EXT} -m comment --comment "masquerade traffic for default/web:http external '
            'destinations" -j KUBE-MARK-MASQ',
            f"nat: -A {EXT} -j {SVC}",
            f"nat: -A {FW} {lb_comment} -s 192.168.0.0/24 -j {EXT}",
            f"nat: -A {FW} {lb_comment} -s 203.0.113.0/25 -j {EXT}",
            # The node IP 192.168.0.10 is inside a range, so the LB IP itself is allowed as source.
            f"nat: -A {FW} {lb_comment} -s 198.51.100.7 -j {EXT}",
            f'nat: -A {FW} -m comment --comment "other traffic to default/web:http will be dropped '
            'by KUBE-PROXY-FIREWALL"',
            f'nat: -A {SVC} -m comment --comment "default/web:http -> 10.244.1.5:8080" -j {sep("10.244.1.5")}',
            *sep_lines("10.244.1.5"),
        ]
    )
    # Chain lines are written as each chain is started: EXT, FW, SVC, then the SEPs.
    assert service_chains([svc], [web_slice(ep("10.244.1.5"))]) == [
        EXT,
        FW,
        SVC,
        sep("10.244.1.5"),
    ]


def _etp_local_service() -> Service:
    return web(
        type=ServiceType.LOAD_BALANCER,
        external_traffic_policy=TrafficPolicy.LOCAL,
        ports=(ServicePort(80, name="http", target_port=8080, node_port=30081),),
        load_balancer_ingress=(LoadBalancerIngress(ip="198.51.100.8"),),
        health_check_node_port=31000,
    )


def _etp_head() -> list[str]:
    return [
        CLUSTER_IP_RULE,
        'nat: -A KUBE-SERVICES -m comment --comment "default/web:http loadbalancer IP" -m tcp -p tcp '
        f"-d 198.51.100.8 --dport 80 -j {EXT}",
    ]


NODEPORT_RULES = [
    "nat: -A KUBE-NODEPORTS -m comment --comment default/web:http -m tcp -p tcp -d 127.0.0.0/8 "
    f"--dport 30081 -m nfacct --nfacct-name localhost_nps_accepted_pkts -j {EXT}",
    f"nat: -A KUBE-NODEPORTS -m comment --comment default/web:http -m tcp -p tcp --dport 30081 -j {EXT}",
]
HEALTH_CHECK = (
    'filter: -A KUBE-NODEPORTS -m comment --comment "default/web:http health check node port" '
    "-m tcp -p tcp --dport 31000 -j ACCEPT"
)
SHORT_CIRCUIT = [
    f'nat: -A {EXT} -m comment --comment "pod traffic for default/web:http external destinations" '
    f"-s 10.244.0.0/16 -j {SVC}",
    f'nat: -A {EXT} -m comment --comment "masquerade LOCAL traffic for default/web:http external '
    'destinations" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ',
    f'nat: -A {EXT} -m comment --comment "route LOCAL traffic for default/web:http external '
    f'destinations" -m addrtype --src-type LOCAL -j {SVC}',
]


def _two_endpoint_dispatch(chain: str) -> list[str]:
    return [
        f'nat: -A {chain} -m comment --comment "default/web:http -> 10.244.1.5:8080" -m statistic '
        f"--mode random --probability 0.5000000000 -j {sep('10.244.1.5')}",
        f'nat: -A {chain} -m comment --comment "default/web:http -> 10.244.2.7:8080" -j {sep("10.244.2.7")}',
    ]


def test_external_traffic_policy_local_with_a_local_endpoint() -> None:
    slices = [web_slice(ep("10.244.1.5", "node-a"), ep("10.244.2.7", "node-b"))]
    assert service_lines([_etp_local_service()], slices) == by_table(
        [
            *_etp_head(),
            *NODEPORT_RULES,
            HEALTH_CHECK,
            f"nat: -A {SVC} {MASQ_OFF_CLUSTER}",
            *SHORT_CIRCUIT,
            f"nat: -A {EXT} -j {SVL}",
            *_two_endpoint_dispatch(SVC),
            f'nat: -A {SVL} -m comment --comment "default/web:http -> 10.244.1.5:8080" -j {sep("10.244.1.5")}',
            *sep_lines("10.244.1.5"),
            *sep_lines("10.244.2.7"),
        ]
    )
    assert service_chains([_etp_local_service()], slices) == [
        EXT,
        SVC,
        SVL,
        sep("10.244.1.5"),
        sep("10.244.2.7"),
    ]


def test_external_traffic_policy_local_without_local_endpoints() -> None:
    slices = [web_slice(ep("10.244.1.5", "node-b"), ep("10.244.2.7", "node-c"))]
    drop = '-m comment --comment "default/web:http has no local endpoints"'
    assert service_lines([_etp_local_service()], slices) == by_table(
        [
            *_etp_head(),
            f"filter: -A KUBE-EXTERNAL-SERVICES {drop} -m tcp -p tcp -d 198.51.100.8 --dport 80 -j DROP",
            *NODEPORT_RULES,
            f"filter: -A KUBE-EXTERNAL-SERVICES {drop} -m addrtype --dst-type LOCAL -m tcp -p tcp "
            "--dport 30081 -j DROP",
            HEALTH_CHECK,
            f"nat: -A {SVC} {MASQ_OFF_CLUSTER}",
            *SHORT_CIRCUIT,  # no final jump to KUBE-SVL: there is no SVL chain
            *_two_endpoint_dispatch(SVC),
            *sep_lines("10.244.1.5"),
            *sep_lines("10.244.2.7"),
        ]
    )


def test_internal_traffic_policy_local() -> None:
    svc = web(internal_traffic_policy=TrafficPolicy.LOCAL)
    with_local = [web_slice(ep("10.244.1.5", "node-a"), ep("10.244.2.7", "node-b"))]
    assert service_lines([svc], with_local) == by_table(
        [
            'nat: -A KUBE-SERVICES -m comment --comment "default/web:http cluster IP" -m tcp -p tcp '
            f"-d 10.96.0.10 --dport 80 -j {SVL}",
            f"nat: -A {SVL} {MASQ_OFF_CLUSTER}",
            f'nat: -A {SVL} -m comment --comment "default/web:http -> 10.244.1.5:8080" -j {sep("10.244.1.5")}',
            *sep_lines("10.244.1.5"),
        ]
    )
    without_local = [web_slice(ep("10.244.2.7", "node-b"))]
    assert service_lines([svc], without_local) == by_table(
        [
            'filter: -A KUBE-SERVICES -m comment --comment "default/web:http has no local endpoints" '
            "-m tcp -p tcp -d 10.96.0.10 --dport 80 -j DROP",
        ]
    )


def test_client_ip_affinity() -> None:
    svc = web(session_affinity=SessionAffinity.CLIENT_IP, session_affinity_timeout_s=600)
    s1, s2 = sep("10.244.1.5"), sep("10.244.2.7")
    assert service_lines([svc], [web_slice(ep("10.244.1.5"), ep("10.244.2.7"))]) == by_table(
        [
            CLUSTER_IP_RULE,
            f"nat: -A {SVC} {MASQ_OFF_CLUSTER}",
            f'nat: -A {SVC} -m comment --comment "default/web:http -> 10.244.1.5:8080" -m recent '
            f"--name {s1} --rcheck --seconds 600 --reap -j {s1}",
            f'nat: -A {SVC} -m comment --comment "default/web:http -> 10.244.2.7:8080" -m recent '
            f"--name {s2} --rcheck --seconds 600 --reap -j {s2}",
            *_two_endpoint_dispatch(SVC),
            *sep_lines("10.244.1.5", affinity=True),
            *sep_lines("10.244.2.7", affinity=True),
        ]
    )


def test_terminating_only_endpoints_fall_back_to_serving_terminating() -> None:
    slices = [
        web_slice(
            ep("10.244.1.5", "node-b", ready=False, serving=True, terminating=True),
            ep("10.244.2.7", "node-c", ready=False, serving=True, terminating=True),
            ep("10.244.3.9", "node-c", ready=False, serving=False, terminating=True),
        )
    ]
    assert service_lines([web()], slices) == by_table(
        [
            CLUSTER_IP_RULE,
            f"nat: -A {SVC} {MASQ_OFF_CLUSTER}",
            *_two_endpoint_dispatch(SVC),
            *sep_lines("10.244.1.5"),
            *sep_lines("10.244.2.7"),
        ]
    )


def test_no_endpoints_reject() -> None:
    reject = [
        'filter: -A KUBE-SERVICES -m comment --comment "default/web:http has no endpoints" '
        "-m tcp -p tcp -d 10.96.0.10 --dport 80 -j REJECT",
    ]
    assert service_lines([web()], []) == reject
    not_serving = [web_slice(ep("10.244.1.5", ready=False, serving=False))]
    assert service_lines([web()], not_serving) == reject


def test_headless_and_external_name_services_produce_nothing() -> None:
    headless = make_service(
        "default", "db", cluster_ip="None", ports=(ServicePort(5432, name="pg"),)
    )
    external = make_service(
        "default",
        "ext",
        type=ServiceType.EXTERNAL_NAME,
        cluster_ip="10.96.0.99",
        external_name="example.com",
        ports=(ServicePort(443, name="https"),),
    )
    slices = [make_slice("default", "db", (ep("10.244.1.5"),), (port(5432, "pg"),))]
    assert service_lines([headless, external], slices) == by_table([])
