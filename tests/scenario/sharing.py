"""What two Worlds in one process share: reachable mutable objects, and module-level state.

Helpers of ``test_world_caches.py``. DESIGN.md decision 8: the speed state belongs to the run,
so two Worlds share nothing mutable, and module-level state does not grow run after run.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import functools
import gc
import sys
import types
from collections.abc import Iterator

import numpy as np

NOT_WALKED = (
    types.ModuleType,
    type,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.CodeType,
    types.FrameType,
    functools._lru_cache_wrapper,
)
"""Objects the walk does not enter: what they lead to is the program's (module globals,
classes, code), not a run's. A run reaches module-level memos only through functions."""

MUTABLE_BUILTINS = (dict, list, set, bytearray, collections.deque)


def reachable(root: object) -> dict[int, object]:
    """Every object reachable from ``root`` through references (``gc.get_referents``)."""
    seen: dict[int, object] = {}
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, NOT_WALKED):
            continue
        seen[id(obj)] = obj
        stack.extend(gc.get_referents(obj))
    return seen


def _immutable_svcsim(obj: object) -> bool:
    """A frozen dataclass, a NamedTuple or an Enum member: a value, not state."""
    if isinstance(obj, (tuple, enum.Enum)):
        return True
    params = getattr(type(obj), "__dataclass_params__", None)
    return params is not None and bool(params.frozen)


def mutable_objects(objects: dict[int, object]) -> dict[int, object]:
    """The mutable ones of ``objects``: builtin containers, writable arrays, svcsim objects.

    svcsim objects count unless they are values (frozen dataclasses, NamedTuples, Enums). The
    ``__dict__`` of a value is no state of its own and does not count.
    """
    value_dicts = {
        id(vars(obj))
        for obj in objects.values()
        if _immutable_svcsim(obj) and hasattr(obj, "__dict__")
    }
    out: dict[int, object] = {}
    for key, obj in objects.items():
        if isinstance(obj, MUTABLE_BUILTINS):
            if key not in value_dicts:
                out[key] = obj
        elif isinstance(obj, np.ndarray):
            if obj.flags.writeable:
                out[key] = obj
        elif type(obj).__module__.startswith("svcsim.") and not _immutable_svcsim(obj):
            out[key] = obj
    return out


def describe(obj: object) -> str:
    """A short description of a shared object, for failure messages."""
    text = repr(obj)
    return f"{type(obj).__module__}.{type(obj).__qualname__}: {text[:120]}"


def module_state() -> dict[str, int]:
    """The size of every module-level container and memo of svcsim's modules, by name.

    Containers (dicts, lists, sets) and ``functools`` memos (their current size); a run that
    leaves any of these larger than it found them keeps state at module level.
    """
    sizes: dict[str, int] = {}
    for name, module in sorted(sys.modules.items()):
        if name != "svcsim" and not name.startswith("svcsim."):
            continue
        for attr, value in vars(module).items():
            if isinstance(value, MUTABLE_BUILTINS):
                sizes[f"{name}.{attr}"] = len(value)
            elif isinstance(value, functools._lru_cache_wrapper):
                sizes[f"{name}.{attr}()"] = value.cache_info().currsize
            elif (
                dataclasses.is_dataclass(value)
                and not isinstance(value, type)
                and not _immutable_svcsim(value)
            ):
                sizes[f"{name}.{attr}"] = -1  # a mutable object at module level
    return sizes


def memos_at_module_level() -> Iterator[str]:
    """Module-level objects of svcsim's memo and cache classes (there must be none)."""
    from svcsim.memo import BoundedMemo
    from svcsim.netfilter.nft_parse import ParseMemo
    from svcsim.netfilter.text import RulesetInterner
    from svcsim.proxy.caches import CompileCaches
    from svcsim.proxy.nftables import NameMemo
    from svcsim.sim.caches import RunCaches

    kinds = (BoundedMemo, ParseMemo, RulesetInterner, CompileCaches, NameMemo, RunCaches)
    for name, module in sorted(sys.modules.items()):
        if name == "svcsim" or name.startswith("svcsim."):
            for attr, value in vars(module).items():
                if isinstance(value, kinds):
                    yield f"{name}.{attr}"
