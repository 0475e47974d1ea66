"""What every scenario model shares: camelCase aliases, strictness, located errors, IP types.

Python attribute names are snake_case with units (``min_sync_period_s``); the YAML keys are
the Kubernetes / kube-proxy spelling (``minSyncPeriod``): the alias drops a trailing ``_s``
and camel-cases the rest. Fields whose YAML name does not follow (``clusterCIDR``,
``from``, ``for``) carry an explicit alias.

Checks that compare several fields raise :func:`problems_at`, a ValidationError whose
entries carry their own location, so a message points at the field it is about (pydantic
prefixes the location of the model that raised it).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError, model_serializer
from pydantic.alias_generators import to_camel
from pydantic_core import InitErrorDetails, PydanticCustomError
from pydantic_core.core_schema import SerializerFunctionWrapHandler

from svcsim.k8s.errors import MAX_EXCERPT_CHARS, shorten
from svcsim.k8s.fields import (
    dns1123_subdomain_problem,
    label_value_problem,
    qualified_name_problem,
)

Loc = tuple[str | int, ...]
"""A field location as pydantic reports it: keys and list indexes from the model's root."""


def yaml_alias(name: str) -> str:
    """The YAML key of attribute ``name``: ``min_sync_period_s`` -> ``minSyncPeriod``."""
    return to_camel(name.removesuffix("_s"))


class SchemaModel(BaseModel):
    """Base of every scenario model: frozen, unknown keys refused, camelCase in YAML/JSON.

    Code may build models by attribute name (``Workload(rate_per_s=5, ...)``); files are
    validated by alias only (the loader passes ``by_name=False``), so a snake_case key in
    a scenario file is an unknown field, as a typo would be.
    """

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        alias_generator=yaml_alias,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        use_attribute_docstrings=True,
        allow_inf_nan=False,
    )


class OmitNoneModel(SchemaModel):
    """A model whose unset (None) fields are left out of dumps, so a dump reads like its input."""

    @model_serializer(mode="wrap")
    def _omit_none(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        return {k: v for k, v in data.items() if v is not None} if isinstance(data, dict) else data


def problem(message: str) -> PydanticCustomError:
    """A validation error whose text is ``message`` verbatim (no "Value error, " prefix)."""
    return PydanticCustomError("scenario", "{message}", {"message": message})


def problems_at(title: str, found: Sequence[tuple[Loc, str]]) -> ValidationError:
    """One ValidationError holding every ``(location, message)`` of ``found``.

    Raised from a validator, its entries keep their locations (prefixed with the
    validator's own), which lets a cross-field check blame the right field.
    """
    details = [InitErrorDetails(type=problem(msg), loc=loc, input=None) for loc, msg in found]
    return ValidationError.from_exception_data(title, details)


def _name_check(rule: Any, *, allow_empty: bool = False) -> AfterValidator:
    def check(value: str) -> str:
        if allow_empty and value == "":
            return value
        why = rule(value)
        if why is not None:
            raise problem(why)
        return value

    return AfterValidator(check)


NodeName = Annotated[str, _name_check(dns1123_subdomain_problem)]
"""A Node name (RFC 1123 subdomain, as Kubernetes validates Node names)."""

ObjectName = Annotated[str, _name_check(dns1123_subdomain_problem)]
"""A Deployment or Pod name (RFC 1123 subdomain)."""

OptionalName = Annotated[str, _name_check(dns1123_subdomain_problem, allow_empty=True)]
"""An RFC 1123 subdomain, or ``""`` for "not named"."""


def _got(value: str) -> str:
    """``value`` quoted for a message, cut to an excerpt."""
    return shorten(repr(value), MAX_EXCERPT_CHARS)


def _ipv4(value: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise problem(f"must be an IPv4 address, got {_got(value)}") from None


def _ipv4_cidr(value: str) -> str:
    try:
        return str(ipaddress.IPv4Network(value, strict=True))
    except ValueError:
        pass
    try:
        loose = ipaddress.IPv4Network(value, strict=False)
    except ValueError:
        raise problem(f"must be an IPv4 CIDR such as 10.244.0.0/16, got {_got(value)}") from None
    raise problem(f"has host bits set: {value!r} (did you mean {loose}?)")


IPv4 = Annotated[str, AfterValidator(_ipv4)]
"""An IPv4 address, stored in canonical dotted-quad form."""

IPv4CIDR = Annotated[str, AfterValidator(_ipv4_cidr)]
"""An IPv4 network in CIDR notation without host bits (``10.244.0.0/16``)."""


def _labels(value: dict[str, str]) -> dict[str, str]:
    """``value`` if every key and value is one the API server accepts in labels."""
    found: list[tuple[Loc, str]] = []
    for key, text in value.items():
        if (why := qualified_name_problem(key)) is not None:
            found.append(((key,), f"key {why}"))
        elif (why := label_value_problem(text)) is not None:
            found.append(((key,), why))
    if found:
        raise problems_at("labels", found)
    return value


LabelMap = Annotated[dict[str, str], AfterValidator(_labels)]
"""A label selector in ``matchLabels`` form (``{app: web}``), checked as Kubernetes labels."""
