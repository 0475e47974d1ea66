"""collector_paused switches the cyclic collector off for its block and restores its state."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from svcsim.proxy.gcpause import collector_paused, promote_to_oldest


@pytest.fixture
def restore_gc() -> Iterator[None]:
    was = gc.isenabled()
    yield
    (gc.enable if was else gc.disable)()


@pytest.mark.parametrize("enabled", [True, False])
def test_paused_inside_and_restored_after(enabled: bool, restore_gc: None) -> None:
    (gc.enable if enabled else gc.disable)()
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled() is enabled


def test_restored_after_an_exception(restore_gc: None) -> None:
    gc.enable()
    with pytest.raises(RuntimeError), collector_paused():
        raise RuntimeError("boom")
    assert gc.isenabled()


def test_promoted_objects_skip_the_young_generations(restore_gc: None) -> None:
    gc.collect()
    gc.disable()
    built = [[i] for i in range(1000)]  # tracked, young
    assert gc.get_count()[0] >= 1000
    promote_to_oldest()
    assert gc.get_count()[0] < 1000  # nothing young left to walk
    assert gc.get_freeze_count() == 0  # and nothing frozen for good
    assert all(gc.is_tracked(item) for item in built)  # still collected, in full collections
