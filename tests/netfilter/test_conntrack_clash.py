"""Which kernels drop the loser of a UDP conntrack insert clash (nf_ct_resolve_clash)."""

from __future__ import annotations

import pytest

from svcsim.netfilter.conntrack_clash import KernelVersion, clash_drops, parse_kernel_version


@pytest.mark.parametrize(
    ("kernel", "same_target", "drops"),
    [
        pytest.param("4.19", True, True, id="4.19: NATed clashes are never resolved"),
        pytest.param("4.19", False, True, id="4.19: different targets drop too"),
        pytest.param("4.4", True, True, id="before clash resolution existed"),
        pytest.param("5.0", True, False, id="5.0: identical entries merged (ed07d9a021df)"),
        pytest.param("5.0", False, True, id="5.0: different DNAT targets still drop"),
        pytest.param("5.6", False, True, id="5.6: the last kernel that drops"),
        pytest.param("5.7", False, False, id="5.7: the clashing entry is inserted (6a757c07e51f)"),
        pytest.param("5.7", True, False, id="5.7: identical entries merged"),
        pytest.param("6.8", False, False, id="6.8"),
    ],
)
def test_clash_drops_by_kernel_and_target(kernel: str, same_target: bool, drops: bool) -> None:
    assert clash_drops(parse_kernel_version(kernel), same_target) is drops


@pytest.mark.parametrize(
    ("text", "version"),
    [
        ("5.4", KernelVersion(5, 4)),
        ("5.4.0-1103-aws", KernelVersion(5, 4)),
        ("v6.8", KernelVersion(6, 8)),
        ("5.10.205-195.807.amzn2.x86_64", KernelVersion(5, 10)),
        ("6.1.0+", KernelVersion(6, 1)),
    ],
)
def test_kernel_versions_as_uname_prints_them(text: str, version: KernelVersion) -> None:
    assert parse_kernel_version(text) == version


@pytest.mark.parametrize("text", ["", "5", "five.four", "5.x", "5.4.0 extra words?!", "1234.5"])
def test_other_text_is_not_a_kernel_version(text: str) -> None:
    with pytest.raises(ValueError, match="not a kernel version"):
        parse_kernel_version(text)


def test_versions_order_numerically() -> None:
    assert parse_kernel_version("5.10") > parse_kernel_version("5.9")
    assert str(KernelVersion(5, 10)) == "5.10"
