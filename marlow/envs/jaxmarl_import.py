"""Importing one JaxMARL environment module without the rest of JaxMARL.

``import jaxmarl.environments.mpe.simple_spread`` runs ``jaxmarl/__init__.py`` and
``jaxmarl/environments/__init__.py`` first, and those import every JaxMARL environment (STORM, SMAX,
JaxNav, Overcooked, Hanabi, MABrax, ...): 2.7-3.2 s on the 2-core benchmark machine, most of the time
between ``marlow train`` and its first compilation when XLA's persistent cache is warm. :func:`import_jaxmarl`
registers those parent packages as :class:`LazyPackage` modules (their ``__path__`` set so that submodules
resolve, their ``__init__.py`` not run) and imports just the requested module. The first attribute looked
up on a lazy package that it does not yet hold (``jaxmarl.make``, say, by user code) runs the package's real
``__init__.py`` in place, so JaxMARL behaves as if imported normally.

jaxmarl 0.2.0 also prints "Importing submoduled environments..." from its registration module, and its
``mabrax_env.py`` runs ``sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__``, which would undo a
caller's redirection (e.g. of a test capturing ``marlow list``). Those prints go to ``sys.__stdout__``, so
file descriptor 1 is pointed at /dev/null for the import and the Python streams are restored after it.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import types

# the packages whose __init__ imports far more than the module asked for (all of JaxMARL, or all of MPE
# with its matplotlib visualiser, or both SMAX variants)
LAZY_PACKAGES = ("jaxmarl", "jaxmarl.environments", "jaxmarl.environments.mpe", "jaxmarl.environments.smax")


class LazyPackage(types.ModuleType):
    """A package registered without running its ``__init__.py``; the first missing attribute runs it."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        self.__class__ = types.ModuleType  # from here on a plain module: no second run
        _quiet(lambda: self.__spec__.loader.exec_module(self))
        return getattr(self, name)


def _register_lazy(name: str) -> None:
    if name in sys.modules:
        return
    parent, _, child = name.rpartition(".")
    if parent:
        where = os.path.join(sys.modules[parent].__path__[0], child)
        spec = importlib.util.spec_from_file_location(
            name, os.path.join(where, "__init__.py"), submodule_search_locations=[where]
        )
    else:
        spec = importlib.util.find_spec(name)
    if spec is None or spec.submodule_search_locations is None:
        raise ImportError(f"no package {name}")
    module = LazyPackage(name)
    module.__spec__, module.__loader__ = spec, spec.loader
    module.__path__, module.__file__ = list(spec.submodule_search_locations), spec.origin
    module.__package__ = name
    sys.modules[name] = module
    if parent:
        setattr(sys.modules[parent], child, module)


def _quiet(fn):
    """``fn()`` with file descriptor 1 on /dev/null and the Python streams restored after it."""
    out, err = sys.stdout, sys.stderr
    for stream in (out, sys.__stdout__):
        if stream is not None:
            stream.flush()
    saved_fd, devnull = os.dup(1), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    try:
        return fn()
    finally:
        if sys.__stdout__ is not None:
            sys.__stdout__.flush()
        os.dup2(saved_fd, 1)
        os.close(saved_fd)
        os.close(devnull)
        sys.stdout, sys.stderr = out, err


def import_jaxmarl(module: str) -> types.ModuleType:
    """Import the JaxMARL module ``module`` (e.g. ``"jaxmarl.environments.mpe.simple_spread"``) and only
    what it imports itself (module docstring)."""
    for name in LAZY_PACKAGES:
        if module.startswith(name + ".") or module == name:
            _register_lazy(name)
    return _quiet(lambda: importlib.import_module(module))
