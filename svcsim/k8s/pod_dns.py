"""A Pod's ``spec.dnsPolicy`` and ``spec.dnsConfig``, read as the API server and glibc read them.

* ``dnsPolicy``: one of the API's four values (``ClusterFirst`` by default;
  ``ClusterFirstWithHostNet``, ``Default``, ``None``); ``None`` needs ``dnsConfig.nameservers``
  (pkg/apis/core/validation ``validatePodDNSConfig``).
* ``dnsConfig.options``: ``name`` required, ``value`` a string. The kubelet writes them into
  the Pod's resolv.conf ``options`` line (pkg/kubelet/network/dns/dns.go
  ``mergeDNSOptions``: a name given twice keeps the last value), where glibc reads them
  (``resolv/res_init.c``). svcsim models the ones that change a lookup:

  - ``ndots:N``, ``timeout:N``, ``attempts:N``: N a non-negative integer; glibc caps them at
    ``RES_MAXNDOTS`` (15), ``RES_MAXRETRANS`` (30 s) and ``RES_MAXRETRY`` (5)
    (``resolv/resolv.h``): a larger N is a warning and is capped. ``timeout``/``attempts``
    of 0 are refused (glibc would wait 1 s / never ask: surely not meant);
  - ``single-request``, ``single-request-reopen`` and ``use-vc`` are flags: a value is a
    problem.

  Other option names (``rotate``, ``edns0``, ``trust-ad`` ...) are warnings: svcsim ignores
  them.
* ``dnsConfig.searches`` follow the cluster's search domains; ``dnsConfig.nameservers`` after
  the cluster DNS are a warning (glibc asks them only when it fails; svcsim does not).
"""

from __future__ import annotations

from typing import Final

from svcsim.k8s.fields import Reader, YMap, join
from svcsim.k8s.objects import PodDns

DNS_POLICIES: Final = ("ClusterFirst", "ClusterFirstWithHostNet", "Default", "None")
"""``spec.dnsPolicy`` values the API accepts."""
RES_MAXNDOTS: Final = 15
"""glibc's cap on ``ndots`` (``resolv/resolv.h``)."""
RES_MAXRETRANS: Final = 30
"""glibc's cap on ``timeout``, seconds."""
RES_MAXRETRY: Final = 5
"""glibc's cap on ``attempts``."""
NUMERIC_OPTIONS: Final = {
    "ndots": (0, RES_MAXNDOTS),
    "timeout": (1, RES_MAXRETRANS),
    "attempts": (1, RES_MAXRETRY),
}
"""Numeric options: the least value svcsim accepts and glibc's cap."""
FLAG_OPTIONS: Final = ("single-request", "single-request-reopen", "use-vc")
"""Flag options svcsim models (``RES_SNGLKUP``, ``RES_SNGLKUPREOP``, ``RES_USEVC``)."""


def parse_pod_dns(r: Reader, spec: YMap, path: str) -> PodDns | None:
    """``dnsPolicy`` and ``dnsConfig`` of a Pod spec at ``path``; None if neither is set."""
    if spec.get("dnsPolicy") is None and spec.get("dnsConfig") is None:
        return None
    policy = r.choice(spec, "dnsPolicy", path, DNS_POLICIES, "ClusterFirst")
    config = r.mapping(spec, "dnsConfig", path)
    cpath = join(path, "dnsConfig")
    options: list[tuple[str, str | None]] = []
    searches: list[str] = []
    nameservers: list[str] = []
    if config is not None:
        for _, value, _ in r.strings(config, "searches", cpath):
            searches.append(value.lower().rstrip("."))
        for field, value, line in r.strings(config, "nameservers", cpath):
            if (ip := r.check_ip(value, line, field)) is not None:
                nameservers.append(ip)
        for opath, om in r.maps(config, "options", cpath):
            option = _option(r, om, opath)
            if option is not None:
                options.append(option)
    if nameservers and policy.startswith("ClusterFirst") and config is not None:
        r.warn(
            config.line_of("nameservers"),
            join(cpath, "nameservers"),
            "svcsim asks only the "
            "cluster DNS; glibc would try these after it, when it fails: ignored",
        )
    if policy == "None" and not nameservers:
        line = spec.line_of("dnsConfig") if config is not None else spec.line_of("dnsPolicy")
        r.error(
            line,
            join(cpath, "nameservers"),
            "must provide at least one DNS nameserver when dnsPolicy is None",
        )
    return PodDns(policy, tuple(options), tuple(searches), tuple(nameservers))


def _option(r: Reader, om: YMap, path: str) -> tuple[str, str | None] | None:
    name = r.string(om, "name", path, required=True)
    value = r.string(om, "value", path)
    if not name or (value is None and om.get("value") is not None):
        return None  # already a problem: no name, or a value that is not a string
    line = om.line_of("value") if om.get("value") is not None else om.line_of("name")
    if name in NUMERIC_OPTIONS:
        low, cap = NUMERIC_OPTIONS[name]
        if value is None or not value.isdigit():
            got = "no value" if value is None else repr(value)
            r.error(line, join(path, "value"), f"{name} needs a whole number, got {got}")
            return None
        number = int(value)
        if number < low:
            r.error(line, join(path, "value"), f"{name} must be at least {low}, got {number}")
            return None
        if number > cap:
            r.warn(
                line,
                join(path, "value"),
                f"{name}:{number} is more than glibc's limit: {cap} is used",
            )
            number = cap
        return name, str(number)
    if name in FLAG_OPTIONS:
        if value is not None and value != "":
            r.error(
                line, join(path, "value"), f"{name} is a flag: it takes no value, got {value!r}"
            )
            return None
        return name, None
    r.warn(
        om.line_of("name"),
        join(path, "name"),
        f"resolver option {name!r} is not "
        f"simulated (svcsim models ndots, timeout, attempts, {', '.join(FLAG_OPTIONS)}): "
        "ignored",
    )
    return None


__all__ = ["DNS_POLICIES", "FLAG_OPTIONS", "NUMERIC_OPTIONS", "parse_pod_dns"]
