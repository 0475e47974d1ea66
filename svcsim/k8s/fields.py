"""Typed, line-aware reading of manifest fields, and the IP spellings kube-proxy accepts.

The loader turns YAML into :class:`YMap`/:class:`YList` (a dict/list that remember the line of
every key and item) and reads them through a :class:`Reader`, which checks types and ranges
and records each problem as ``file:line: Kind/ns/name: field.path: problem`` at the line of
the offending field.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Collection, Sequence
from typing import Any

from svcsim.k8s.errors import MAX_EXCERPT_CHARS, ManifestError, printable, quote, shorten


class YMap(dict[str, Any]):
    """A YAML mapping that remembers its own line and the line of each key (1-based)."""

    __slots__ = ("key_lines", "line")

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line
        self.key_lines: dict[str, int] = {}

    def line_of(self, key: str) -> int:
        """The line of ``key``, or of the mapping itself when the key is absent."""
        return self.key_lines.get(key, self.line)


class YList(list[Any]):
    """A YAML sequence that remembers its own line and the line of each item (1-based)."""

    __slots__ = ("item_lines", "line")

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line
        self.item_lines: list[int] = []


# --- IP spellings -------------------------------------------------------------------------


_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_CANONICAL_IPV4 = re.compile(rf"(?:{_OCTET}\.){{3}}{_OCTET}")
"""An IPv4 address in dotted decimal without leading zeros (``[0-9]``: not Unicode digits)."""


def is_canonical_ipv4(text: str) -> bool:
    """True if ``text`` is an IPv4 address as kube-proxy prints it (then ``normalize_ip`` is it)."""
    return _CANONICAL_IPV4.fullmatch(text) is not None


def normalize_ip(text: str) -> str:
    """The canonical spelling of an IP address, read the way kube-proxy reads it.

    kube-proxy parses with ``netutils.ParseIPSloppy`` (k8s.io/utils/net), Go's pre-1.17
    parser, which takes IPv4 octets with leading zeros as *decimal*: ``172.30.0.041`` is
    172.30.0.41 (pkg/proxy/iptables/proxier_test.go TestBadIPs). IPv6 is printed the way
    Go prints it (RFC 5952, lowercase), and an IPv4-mapped IPv6 address as plain IPv4.
    Raises ValueError for anything else (zones such as ``%eth0`` included).
    """
    if ":" not in text:
        if is_canonical_ipv4(text):
            return text  # the common case, already as kube-proxy prints it
        parts = text.split(".")
        if len(parts) != 4 or not all(p.isascii() and p.isdigit() for p in parts):
            raise ValueError(f"not a valid IP address: {text!r}")
        octets = [int(p) for p in parts]
        if any(o > 255 for o in octets):
            raise ValueError(f"not a valid IP address: {text!r}")
        return ".".join(str(o) for o in octets)
    if "%" in text:
        raise ValueError(f"not a valid IP address: {text!r}")
    try:
        addr = ipaddress.IPv6Address(text)
    except ValueError:
        raise ValueError(f"not a valid IP address: {text!r}") from None
    mapped = addr.ipv4_mapped
    return str(mapped) if mapped is not None else str(addr)


def normalize_cidr(text: str) -> str:
    """The canonical spelling of a CIDR, as ``netutils.ParseCIDRSloppy`` + ``String()`` give it.

    Leading zeros are decimal in the address and in the prefix length
    (``203.0.113.000/025`` -> ``203.0.113.0/25``, TestBadIPs); host bits are masked off,
    as Go's ``IPNet.String()`` prints the network. Raises ValueError when invalid.
    """
    addr, sep, prefix = text.partition("/")
    if not sep or not prefix.isascii() or not prefix.isdigit():
        raise ValueError(f"not a valid CIDR: {text!r}")
    bits = int(prefix)
    try:
        if ":" in addr:
            if "%" in addr:
                raise ValueError(text)
            net6 = ipaddress.IPv6Network((ipaddress.IPv6Address(addr), bits), strict=False)
            return str(net6)
        net4 = ipaddress.IPv4Network((normalize_ip(addr), bits), strict=False)
    except ValueError:
        raise ValueError(f"not a valid CIDR: {text!r}") from None
    return str(net4)


def ip_family(ip: str) -> str:
    """``"IPv4"`` or ``"IPv6"`` for a normalised IP (EndpointSlice addressType spelling)."""
    return "IPv6" if ":" in ip else "IPv4"


# Kubernetes validation (pkg/apis/core/validation, ValidateNonSpecialIP) refuses these
# as endpoint addresses: a DNAT to them could never leave the node as intended.
_SPECIAL_NETS = (
    (ipaddress.ip_network("0.0.0.0/32"), "may not be unspecified (0.0.0.0)"),
    (ipaddress.ip_network("::/128"), "may not be unspecified (::)"),
    (ipaddress.ip_network("127.0.0.0/8"), "may not be in the loopback range (127.0.0.0/8)"),
    (ipaddress.ip_network("::1/128"), "may not be in the loopback range (::1/128)"),
    (ipaddress.ip_network("169.254.0.0/16"), "may not be in the link-local range (169.254.0.0/16)"),
    (ipaddress.ip_network("fe80::/10"), "may not be in the link-local range (fe80::/10)"),
    (ipaddress.ip_network("224.0.0.0/4"), "may not be in the multicast range (224.0.0.0/4)"),
    (ipaddress.ip_network("ff00::/8"), "may not be in the multicast range (ff00::/8)"),
)


_SPECIAL_RANGES = {
    version: tuple(
        (int(net.network_address), int(net.broadcast_address), why)
        for net, why in _SPECIAL_NETS
        if net.version == version
    )
    for version in (4, 6)
}
""":data:`_SPECIAL_NETS` by IP version, as (first address, last address, why) integers."""


_SPECIAL_FIRST_OCTETS = frozenset(
    octet for first, last, _ in _SPECIAL_RANGES[4] for octet in range(first >> 24, (last >> 24) + 1)
)
"""The first octets of the IPv4 :data:`_SPECIAL_RANGES`: an address starting otherwise is
in none of them (most endpoint addresses, checked without the arithmetic)."""


def special_ip_problem(ip: str) -> str | None:
    """Why ``ip`` (normalised) cannot be an endpoint address, or None if it can."""
    if ":" in ip:
        ranges, value = _SPECIAL_RANGES[6], int(ipaddress.IPv6Address(ip))
    else:
        if int(ip[: ip.index(".")]) not in _SPECIAL_FIRST_OCTETS:
            return None
        # Normalised IPv4 (dotted decimal): integer arithmetic, ~10x faster than ipaddress
        # (a 10,000-Service manifest has 100,000 endpoint addresses).
        a, b, c, d = map(int, ip.split("."))
        ranges, value = _SPECIAL_RANGES[4], (a << 24) | (b << 16) | (c << 8) | d
    for first, last, why in ranges:
        if first <= value <= last:
            return why
    return None


# --- names ---------------------------------------------------------------------------------


def _got(s: str) -> str:
    """``s`` for a "got ..." part of a message: its repr, cut to an excerpt."""
    return shorten(repr(s), MAX_EXCERPT_CHARS)


_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def dns1123_label_problem(s: str) -> str | None:
    """Why ``s`` is not an RFC 1123 label (namespaces, port names), or None."""
    if len(s) > 63:
        return f"must be no more than 63 characters, got {len(s)}"
    if not _DNS1123_LABEL.fullmatch(s):
        return (
            "must be lowercase letters, digits and '-', starting and ending alphanumeric; "
            f"got {_got(s)}"
        )
    return None


def dns1035_label_problem(s: str) -> str | None:
    """Why ``s`` is not an RFC 1035 label (Service names), or None."""
    if len(s) > 63:
        return f"must be no more than 63 characters, got {len(s)}"
    if not _DNS1035_LABEL.fullmatch(s):
        return (
            "must be lowercase letters, digits and '-', starting with a letter and ending "
            f"alphanumeric; got {_got(s)}"
        )
    return None


def dns1123_subdomain_problem(s: str) -> str | None:
    """Why ``s`` is not an RFC 1123 subdomain (most object names), or None."""
    if len(s) > 253:
        return f"must be no more than 253 characters, got {len(s)}"
    if not _DNS1123_SUBDOMAIN.fullmatch(s):
        return (
            "must be lowercase letters, digits, '-' and '.', starting and ending "
            f"alphanumeric; got {_got(s)}"
        )
    return None


_QUALIFIED_PART = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_QUALIFIED_RULE = (
    "must be alphanumeric characters, '-', '_' or '.', starting and ending alphanumeric"
)
MAX_ANNOTATIONS_BYTES = 256 * 1024
"""The API server's limit on all annotations of one object together (TotalAnnotationSizeLimitB)."""


def qualified_name_problem(s: str) -> str | None:
    """Why ``s`` is not a qualified name (label and annotation keys: ``[prefix/]name``), or None.

    As apimachinery's ``IsQualifiedName``: the optional prefix is an RFC 1123 subdomain,
    the name at most 63 characters of ``[-A-Za-z0-9_.]`` starting and ending alphanumeric.
    """
    prefix, slash, name = s.rpartition("/")
    if slash:
        if "/" in prefix:
            return f"must be [prefix/]name, with at most one '/'; got {_got(s)}"
        if not prefix:
            return "prefix part must be non-empty"
        if (why := dns1123_subdomain_problem(prefix)) is not None:
            return f"prefix part {why}"
    if not name:
        return "name part must be non-empty"
    if len(name) > 63:
        return f"name part must be no more than 63 characters, got {len(name)}"
    if not _QUALIFIED_PART.fullmatch(name):
        return f"name part {_QUALIFIED_RULE}; got {_got(s)}"
    return None


def label_value_problem(s: str) -> str | None:
    """Why ``s`` is not a label value (apimachinery ``IsValidLabelValue``), or None.

    A label value may be empty.
    """
    if len(s) > 63:
        return f"must be no more than 63 characters, got {len(s)}"
    if s and not _QUALIFIED_PART.fullmatch(s):
        return f"must be empty or {_QUALIFIED_RULE.removeprefix('must be ')}; got {_got(s)}"
    return None


def port_name_problem(s: str) -> str | None:
    """Why ``s`` is not an IANA_SVC_NAME (container port names, named targetPorts), or None."""
    if len(s) > 15:
        return f"must be no more than 15 characters, got {len(s)}"
    if not re.fullmatch(r"[-a-z0-9]+", s):
        return f"must be lowercase letters, digits and '-'; got {_got(s)}"
    if not re.search(r"[a-z]", s):
        return f"must contain at least one letter; got {_got(s)}"
    if "--" in s or s.startswith("-") or s.endswith("-"):
        return f"must not begin or end with '-' or contain '--'; got {_got(s)}"
    return None


# --- typed reading -------------------------------------------------------------------------


def describe(value: object) -> str:
    """A short rendering of a YAML value for messages: ``"80"``, ``80``, ``true``, ``a list``.

    Never longer than about :data:`~svcsim.k8s.errors.MAX_EXCERPT_CHARS` characters (a
    long string or a huge number is cut, ending in ``…``), never more than one line.
    """
    if isinstance(value, YMap | dict):
        return "a mapping"
    if isinstance(value, YList | list):
        return "a list"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return quote(value)
    if isinstance(value, int):
        return _describe_int(value)
    if isinstance(value, float):
        return str(value)
    return shorten(printable(str(value)), MAX_EXCERPT_CHARS)


def _describe_int(value: int) -> str:
    """An integer as written, or its length when it is too long to quote."""
    if value.bit_length() <= _LONG_INT_BITS:
        return str(value)
    if value.bit_length() < _EXACT_DIGITS_BITS:
        return f"an integer of {len(str(abs(value)))} digits"
    return f"an integer of about {int(value.bit_length() * math.log10(2)) + 1} digits"


_LONG_INT_BITS = 190
"""Integers above ~10**57 are described by their length, not printed (they fit no field)."""

_EXACT_DIGITS_BITS = 14_000
"""Below this, ``str()`` of an integer is allowed (Python refuses more than 4300 digits)."""


def join(path: str, key: str) -> str:
    """``spec`` + ``ports`` -> ``spec.ports``; an empty parent gives the bare key."""
    return f"{path}.{key}" if path else key


class Reader:
    """Reads the fields of one object, recording its problems and warnings.

    Every method takes the mapping ``m``, the ``key`` to read and ``path``, the JSON path of
    ``m`` (``""`` at the top of the object). Absent and ``null`` mean "unset"; a value of the
    wrong type is a problem and reads as unset, so one object can report many problems.
    """

    __slots__ = ("obj", "problems", "source", "warnings")

    def __init__(self, source: str, obj: str) -> None:
        self.source = source
        self.obj = obj
        self.problems: list[ManifestError] = []
        self.warnings: list[ManifestError] = []

    def error(self, line: int, path: str, message: str) -> None:
        """Record a problem at ``line`` for field ``path``."""
        self.problems.append(ManifestError(self.source, line, self.obj, path, message))

    def warn(self, line: int, path: str, message: str) -> None:
        """Record a warning (same shape as a problem, but loading goes on)."""
        self.warnings.append(ManifestError(self.source, line, self.obj, path, message))

    def known(self, m: YMap, path: str, keys: Collection[str]) -> None:
        """Warn about keys of ``m`` outside ``keys`` (typos such as ``targetport``)."""
        for key in m:
            if key not in keys:
                self.warn(m.line_of(key), join(path, key), "unknown field (ignored)")

    def _typed(self, m: YMap, key: str, path: str, kind: type | tuple[type, ...], what: str) -> Any:
        value = m.get(key)
        if value is None:
            return None
        if type(value) is kind:
            return value  # the common case (an exact bool is asked for as bool)
        kinds = kind if isinstance(kind, tuple) else (kind,)
        # YAML `true` is a Python int too; the API never takes a boolean for a number.
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            self.error(m.line_of(key), join(path, key), f"must be {what}, got {describe(value)}")
            return None
        return value

    def mapping(self, m: YMap, key: str, path: str) -> YMap | None:
        """The mapping at ``key``, or None."""
        value = m.get(key)
        if value is None or value.__class__ is YMap:
            return value
        checked: YMap | None = self._typed(m, key, path, YMap, "a mapping")
        return checked

    def sequence(self, m: YMap, key: str, path: str) -> YList | None:
        """The list at ``key``, or None."""
        value = m.get(key)
        if value is None or value.__class__ is YList:
            return value
        checked: YList | None = self._typed(m, key, path, YList, "a list")
        return checked

    def maps(self, m: YMap, key: str, path: str) -> list[tuple[str, YMap]]:
        """The mapping items of the list at ``key``, each with its path (``ports[0]``)."""
        seq = self.sequence(m, key, path)
        out: list[tuple[str, YMap]] = []
        for i, item in enumerate(seq or ()):
            item_path = f"{join(path, key)}[{i}]"
            if isinstance(item, YMap):
                out.append((item_path, item))
            else:
                assert seq is not None
                self.error(seq.item_lines[i], item_path, f"must be a mapping, got {describe(item)}")
        return out

    def strings(self, m: YMap, key: str, path: str) -> list[tuple[str, str, int]]:
        """The string items of the list at ``key`` as ``(path, value, line)``."""
        seq = self.sequence(m, key, path)
        out: list[tuple[str, str, int]] = []
        for i, item in enumerate(seq or ()):
            assert seq is not None
            item_path = f"{join(path, key)}[{i}]"
            if isinstance(item, str):
                out.append((item_path, item, seq.item_lines[i]))
            else:
                self.error(seq.item_lines[i], item_path, f"must be a string, got {describe(item)}")
        return out

    def string(self, m: YMap, key: str, path: str, *, required: bool = False) -> str | None:
        """The string at ``key``, or None (a problem if ``required``)."""
        value = m.get(key)
        if value.__class__ is str:
            return value
        if value is None:
            if required:
                self.error(m.line_of(key), join(path, key), "required")
            return None
        checked: str | None = self._typed(m, key, path, str, "a string")  # the wrong type
        return checked

    def integer(self, m: YMap, key: str, path: str) -> int | None:
        """The integer at ``key``, or None."""
        value = m.get(key)
        if value is None or value.__class__ is int:
            return value
        checked: int | None = self._typed(m, key, path, int, "an integer")
        return checked

    def boolean(self, m: YMap, key: str, path: str) -> bool | None:
        """The boolean at ``key``, or None (the API's nil)."""
        value = m.get(key)
        if value is None or value.__class__ is bool:
            return value
        checked: bool | None = self._typed(m, key, path, bool, "a boolean (true or false)")
        return checked

    def string_map(
        self, m: YMap, key: str, path: str, *, label_values: bool = True
    ) -> tuple[tuple[str, str], ...] | None:
        """A ``map[string]string`` (labels, selector) as sorted pairs, or None if unset.

        Keys are checked as the API server checks label and annotation keys (qualified
        names); values as label values unless ``label_values`` is False (annotations,
        whose values are free text but limited in total size).
        """
        mp = self.mapping(m, key, path)
        if mp is None:
            return None
        pairs: list[tuple[str, str]] = []
        for k, v in mp.items():
            field = join(join(path, key), k)
            # Annotation keys are checked lowercased, as ValidateAnnotations does.
            if (why := qualified_name_problem(k if label_values else k.lower())) is not None:
                self.error(mp.line_of(k), field, f"key {why}")
            if isinstance(v, str):
                pairs.append((k, v))
                if label_values and (why := label_value_problem(v)) is not None:
                    self.error(mp.line_of(k), field, why)
            else:
                # The API server refuses `version: 1` in labels: JSON number into a string.
                self.error(mp.line_of(k), field, f"must be a string, got {describe(v)}")
        size = sum(len(k.encode()) + len(v.encode()) for k, v in pairs)
        if not label_values and size > MAX_ANNOTATIONS_BYTES:
            why = f"may not be more than {MAX_ANNOTATIONS_BYTES:,} bytes in total, got {size:,}"
            self.error(mp.line, join(path, key), why)
        return tuple(sorted(pairs))

    def choice(self, m: YMap, key: str, path: str, allowed: Sequence[str], default: str) -> str:
        """An enum value spelled exactly as the API spells it, or ``default`` when unset."""
        value = self.string(m, key, path)
        if value is None or value == "":
            return default
        if value not in allowed:
            self.error(
                m.line_of(key),
                join(path, key),
                f"must be one of {', '.join(allowed)}; got {describe(value)}",
            )
            return default
        return value

    def ranged(self, m: YMap, key: str, path: str, low: int, high: int) -> int | None:
        """An integer in ``low..high``, or None when unset or out of range (a problem)."""
        value = self.integer(m, key, path)
        if value is not None and not low <= value <= high:
            got = describe(value)
            self.error(m.line_of(key), join(path, key), f"must be {low}..{high}, got {got}")
            return None
        return value

    def ip(self, m: YMap, key: str, path: str) -> str | None:
        """A normalised IP address, or None when unset or invalid (a problem)."""
        value = self.string(m, key, path)
        if value is None or value == "":
            return None
        return self.check_ip(value, m.line_of(key), join(path, key))

    def check_ip(self, value: str, line: int, field: str) -> str | None:
        """Normalise ``value`` as an IP, reporting it as ``field`` at ``line`` if invalid."""
        try:
            ip = normalize_ip(value)
        except ValueError:
            self.error(line, field, f"must be a valid IP address, got {describe(value)}")
            return None
        if ip != value:
            self.warn(line, field, f"{describe(value)} read as {ip}, as kube-proxy reads it")
        return ip

    def check_cidr(self, value: str, line: int, field: str) -> str | None:
        """Normalise ``value`` as a CIDR, reporting it as ``field`` at ``line`` if invalid."""
        try:
            cidr = normalize_cidr(value)
        except ValueError:
            self.error(line, field, f"must be a valid CIDR, got {describe(value)}")
            return None
        if cidr != value:
            self.warn(line, field, f"{describe(value)} read as {cidr}, as kube-proxy reads it")
        return cidr
