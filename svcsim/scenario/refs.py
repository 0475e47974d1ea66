"""How a scenario names things: Services and endpoints, objects, manifests, int-or-percent.

Spellings follow kubectl and kube-proxy: a Service port is ``[namespace/]name[:port]`` (as
kube-proxy prints a ServicePortName, ``ns/svc:http``), an address is ``IP:port``, an object
is ``[namespace/]name``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

from pydantic import AfterValidator, BeforeValidator, StrictStr, WithJsonSchema, model_validator

from svcsim.k8s.fields import (
    dns1035_label_problem,
    dns1123_label_problem,
    dns1123_subdomain_problem,
)
from svcsim.scenario.base import OmitNoneModel, problem, problems_at

DEFAULT_NAMESPACE: Final = "default"

_ADDRESS = re.compile(r"(?P<ip>[0-9.]+):(?P<port>[0-9]+)(?:/(?P<proto>tcp|udp))?")
_SERVICE = re.compile(r"(?:(?P<ns>[^/:]+)/)?(?P<name>[^/:]+)(?::(?P<port>[^/:]+))?")


@dataclass(frozen=True, slots=True)
class ServiceTarget:
    """A Service port: ``port`` is a port name, a number, or None for the only port."""

    namespace: str
    name: str
    port: str | int | None = None

    def __str__(self) -> str:
        port = "" if self.port is None else f":{self.port}"
        return f"{self.namespace}/{self.name}{port}"


@dataclass(frozen=True, slots=True)
class AddressTarget:
    """A literal destination ``ip:port`` (a Pod IP, a node IP and NodePort, ...)."""

    ip: str
    port: int
    protocol: Literal["tcp", "udp"] = "tcp"

    def __str__(self) -> str:
        return f"{self.ip}:{self.port}/{self.protocol}"


@dataclass(frozen=True, slots=True)
class NameTarget:
    """A host name and port the client resolves through cluster DNS (``dns:NAME:PORT``)."""

    name: str
    port: int
    protocol: Literal["tcp", "udp"] = "tcp"

    def __str__(self) -> str:
        return f"dns:{self.name}:{self.port}/{self.protocol}"


_NAME = re.compile(r"dns:(?P<name>[^:/]+):(?P<port>[0-9]+)(?:/(?P<proto>tcp|udp))?")


def parse_name_target(text: str) -> NameTarget:
    """``dns:NAME:PORT[/tcp|udp]`` as a :class:`NameTarget`; ValueError if it is not one.

    NAME is a DNS name (RFC 1123 labels separated by dots, an optional final dot), PORT a
    number: DNS answers give addresses, not ports.
    """
    m = _NAME.fullmatch(text)
    if m is None:
        raise ValueError(f"must be dns:NAME:PORT[/tcp|udp], got {text!r}")
    name = m["name"].lower()
    labels = name.rstrip(".").split(".")
    if len(name.rstrip(".")) > 253:
        raise ValueError(f"name {m['name']!r} is longer than 253 characters")
    for label in labels:
        why = dns1123_label_problem(label)
        if why is not None:
            raise ValueError(f"name {m['name']!r}: label {label!r} {why}")
    proto: Literal["tcp", "udp"] = "udp" if m["proto"] == "udp" else "tcp"
    return NameTarget(name, _port_number(m["port"]), proto)


def _port_number(text: str) -> int:
    port = int(text)
    if not 1 <= port <= 65535:
        raise ValueError(f"port must be 1..65535, got {port}")
    return port


def parse_address(text: str) -> AddressTarget:
    """``IP:port[/tcp|udp]`` as an :class:`AddressTarget`; ValueError if it is not one."""
    m = _ADDRESS.fullmatch(text)
    if m is None:
        raise ValueError(f"must be IP:port[/tcp|udp], got {text!r}")
    try:
        ip = str(ipaddress.IPv4Address(m["ip"]))
    except ValueError:
        raise ValueError(f"{m['ip']!r} is not an IPv4 address") from None
    proto: Literal["tcp", "udp"] = "udp" if m["proto"] == "udp" else "tcp"
    return AddressTarget(ip, _port_number(m["port"]), proto)


def parse_object_ref(text: str, *, service: bool = False) -> tuple[str, str]:
    """``[namespace/]name`` as ``(namespace, name)``; ValueError naming the bad part.

    Names are checked as Kubernetes does: RFC 1035 labels for Services, RFC 1123
    subdomains for other objects, RFC 1123 labels for namespaces.
    """
    ns, sep, name = text.rpartition("/")
    if not sep:
        ns = DEFAULT_NAMESPACE
    why = dns1123_label_problem(ns)
    if why is not None:
        raise ValueError(f"namespace {why}")
    why = (dns1035_label_problem if service else dns1123_subdomain_problem)(name)
    if why is not None:
        raise ValueError(f"name {why}")
    return ns, name


def parse_service_target(text: str) -> ServiceTarget:
    """``[namespace/]name[:portName|port]`` as a :class:`ServiceTarget`; ValueError if not."""
    m = _SERVICE.fullmatch(text)
    if m is None:
        raise ValueError(f"must be [namespace/]service[:port], got {text!r}")
    ns, name = parse_object_ref(f"{m['ns']}/{m['name']}" if m["ns"] else m["name"], service=True)
    port: str | int | None = m["port"]
    if isinstance(port, str) and port.isdigit():
        port = _port_number(port)
    elif isinstance(port, str):
        why = dns1123_label_problem(port)
        if why is not None:
            raise ValueError(f"port name {why}")
    return ServiceTarget(ns, name, port)


def matching_service_ports(text: str, known: Iterable[str]) -> list[str]:
    """The ``namespace/name:port`` keys of ``known`` that ``[namespace/]service[:port]`` names.

    Spelled as a workload's ``to`` (the namespace defaults to ``default``); without a port,
    every port of the Service matches, as ``kubectl get svc NAME`` shows all of them. In the
    order of ``known``; ValueError if ``text`` is not such a spelling.
    """
    target = parse_service_target(text)
    prefix = f"{target.namespace}/{target.name}:"
    port = None if target.port is None else str(target.port)
    return [k for k in known if k.startswith(prefix) and port in (None, k[len(prefix) :])]


def parse_target(text: str) -> ServiceTarget | AddressTarget | NameTarget:
    """A workload's ``to``: an IPv4 address, a ``dns:`` name, or else a Service.

    A Service target has at most one colon, so ``dns:http`` is port ``http`` of a Service named
    ``dns`` (kube-dns's ports are called that), and only ``dns:NAME:PORT`` is a name.
    """
    if text.startswith("dns:") and text.count(":") >= 2:
        return parse_name_target(text)
    if re.match(r"[0-9.]+:", text):
        return parse_address(text)
    return parse_service_target(text)


def _checked(parse: Any) -> AfterValidator:
    def check(value: str) -> str:
        try:
            parse(value)
        except ValueError as exc:
            raise problem(str(exc)) from None
        return value

    return AfterValidator(check)


TargetText = Annotated[StrictStr, _checked(parse_target)]
"""``[ns/]service[:port]``, ``IP:port[/tcp|udp]`` or ``dns:NAME:PORT[/tcp|udp]``."""
ServicePortText = Annotated[StrictStr, _checked(parse_service_target)]
"""``[ns/]service[:port]``."""
ServiceRefText = Annotated[StrictStr, _checked(lambda t: parse_object_ref(t, service=True))]
"""``[ns/]service``."""
ObjectRefText = Annotated[StrictStr, _checked(parse_object_ref)]
"""``[ns/]name`` of a Deployment or Pod."""
AddressText = Annotated[StrictStr, _checked(parse_address)]
"""``IP:port[/tcp|udp]``."""


def _int_or_percent(value: Any) -> Any:
    if isinstance(value, bool):
        raise problem(f"must be an integer or a percentage such as 25%, got {value}")
    if isinstance(value, int):
        if value < 0:
            raise problem(f"must be >= 0, got {value}")
        return value
    if isinstance(value, str):
        m = re.fullmatch(r"([0-9]+)%", value)
        if m is not None and int(m[1]) <= 100:
            return value
    raise problem(f"must be an integer or a percentage 0%..100% such as 25%, got {value!r}")


IntOrPercent = Annotated[
    int | str,
    BeforeValidator(_int_or_percent),
    WithJsonSchema(
        {"anyOf": [{"type": "integer", "minimum": 0}, {"type": "string", "pattern": "^[0-9]+%$"}]}
    ),
]
"""Kubernetes' IntOrString as Deployment strategies use it: ``1`` or ``25%``."""


def resolve_int_or_percent(value: int | str, total: int, *, round_up: bool) -> int:
    """``value`` against ``total``: percentages round up (maxSurge) or down (maxUnavailable).

    As apimachinery ``intstr.GetScaledValueFromIntOrPercent`` with the Deployment
    controller's choice of rounding.
    """
    if isinstance(value, int):
        return value
    percent = int(value.rstrip("%"))
    scaled, rest = divmod(percent * total, 100)
    return scaled + (1 if round_up and rest else 0)


class ManifestRef(OmitNoneModel):
    """Kubernetes objects: a file (relative to the scenario file) or inline YAML text."""

    path: StrictStr | None = None
    """A YAML/JSON file, or a directory of them, relative to the scenario file."""
    inline: StrictStr | None = None
    """The manifests themselves (use a ``|`` block so line numbers in messages match)."""

    @model_validator(mode="after")
    def _one_source(self) -> ManifestRef:
        if (self.path is None) == (self.inline is None):
            where: tuple[str, ...] = ("inline",) if self.path is not None else ()
            raise problems_at("manifest", [(where, "set exactly one of path or inline")])
        if self.path is not None and not self.path.strip():
            raise problems_at("manifest", [(("path",), "must not be empty")])
        return self


__all__ = [
    "DEFAULT_NAMESPACE",
    "AddressTarget",
    "AddressText",
    "IntOrPercent",
    "ManifestRef",
    "NameTarget",
    "ObjectRefText",
    "ServicePortText",
    "ServiceRefText",
    "ServiceTarget",
    "TargetText",
    "parse_address",
    "parse_name_target",
    "parse_object_ref",
    "parse_service_target",
    "parse_target",
    "resolve_int_or_percent",
]
