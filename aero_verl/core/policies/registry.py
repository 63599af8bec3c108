"""Policies by name: each policy module registers a factory under the setting that chooses it.

    @register("rescue", "rounds")                 # chosen by aero.rescue_mode=rounds
    def rounds(cfg: AEROConfig) -> Rescue: ...

Kinds and the AEROConfig field that picks one: exploration (explore_mode), rescue (rescue_mode),
advantage (advantage_mode), weighting (loss_weighting). Every module of core/policies is imported when the
package is (its __init__), so a new policy module registers itself: adding a policy is that module, its
config group under hydra_configs/aero/, and its tests. The settings' validation and documentation read
the registered names (core/config.py `registered`).
"""

from __future__ import annotations

from collections.abc import Callable

KINDS = {"exploration": "explore_mode", "rescue": "rescue_mode", "advantage": "advantage_mode",
         "weighting": "loss_weighting"}
_FACTORIES: dict[str, dict[str, Callable]] = {kind: {} for kind in KINDS}


def register(kind: str, name: str):
    if kind not in _FACTORIES:
        raise ValueError(f"unknown policy kind {kind!r}; kinds: {', '.join(KINDS)}")

    def decorate(factory: Callable) -> Callable:
        existing = _FACTORIES[kind].get(name)
        if existing is not None and existing is not factory:
            raise ValueError(f"a {kind} policy named {name!r} is already registered ({existing.__module__})")
        _FACTORIES[kind][name] = factory
        return factory

    return decorate


def names(kind: str) -> tuple[str, ...]:
    return tuple(_FACTORIES[kind])


def build(kind: str, name: str, *args, **kwargs):
    try:
        factory = _FACTORIES[kind][name]
    except KeyError:
        raise ValueError(f"no {kind} policy named {name!r}; registered: {', '.join(names(kind))}") from None
    return factory(*args, **kwargs)
