"""Run a callback right after a module is imported, without importing it early.

verl loads aero_verl's plugin in every process at `import verl`. Importing verl's trainer or engine
packages there would cost 1.5-3.5 s and ~150 MB in each of the ~10 processes of a run, most of which
never train. So the plugin only registers callbacks that fire when verl itself imports the module
(e.g. the v1 trainer package, where `get_trainer_cls` lives).
"""

import importlib.abc
import importlib.util
import sys
from collections.abc import Callable


def run_after_import(module_name: str, callback: Callable) -> None:
    """Call `callback(module)` once `module_name` is imported: now if it already is, else right after.

    This keeps `import verl` (which runs activate() through the plugin) as cheap as it was: importing
    verl's engine package eagerly costs over a second per process on 2 cores, in processes that never
    train (the driver, the agent-loop, reward, load-balancer and rollout-server workers).
    """
    if module_name in sys.modules:
        callback(sys.modules[module_name])
    else:
        sys.meta_path.insert(0, _AfterImportFinder(module_name, callback))


class _AfterImportFinder(importlib.abc.MetaPathFinder):
    """Finds nothing itself: it wraps the real loader of one module so a callback runs after it."""

    def __init__(self, module_name: str, callback: Callable):
        self._module_name = module_name
        self._callback = callback

    def find_spec(self, fullname, path, target=None):
        if fullname != self._module_name:
            return None
        sys.meta_path.remove(self)  # so the lookup below finds the real spec, once
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        load_module_body = spec.loader.exec_module

        def exec_then_callback(module):
            load_module_body(module)
            self._callback(module)

        spec.loader.exec_module = exec_then_callback
        return spec
