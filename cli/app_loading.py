"""``--app``: a user's own application, aggregates and views, loaded into the CLI.

``--app module`` or ``--app module:Name`` imports the module (from the current folder
too, as ``python -m`` would), so the topics of the aggregates and events it defines
resolve. ``Name`` may be an :class:`AgentLog` subclass, which the commands then use as
the application, or an aggregate class. Views the module defines (the ``View``
subclasses in it, or its ``VIEWS`` sequence if it has one) are followed beside the
default ones. Anything wrong is one ``Error:`` line, never a traceback.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import click

from agentlog.domain import AgentLog, Aggregate
from agentlog.projections import DEFAULT_VIEWS, View


@dataclass(frozen=True)
class App:
    """What the ``--app`` options loaded: the application class and extra views."""

    log_class: type[AgentLog] = AgentLog
    views: tuple[type[View], ...] = ()

    @property
    def all_views(self) -> tuple[type[View], ...]:
        """The default views, then the app's own."""
        return DEFAULT_VIEWS + self.views


class AppLoadError(click.ClickException):
    """An ``--app`` value that cannot be loaded (exit code 1, one line)."""

    def __init__(self, spec: str, reason: str) -> None:
        super().__init__(f"--app {spec!r}: {reason}")
        self.spec = spec
        self.reason = reason


def load_apps(specs: Sequence[str]) -> App:
    """Load every ``--app`` value; at most one may name an application class."""
    log_class: type[AgentLog] = AgentLog
    views: dict[str, type[View]] = {cls.name: cls for cls in DEFAULT_VIEWS}
    for spec in specs:
        found, module_views = load_app(spec)
        if found is not None:
            if log_class is not AgentLog and found is not log_class:
                reason = f"a second application class (already {log_class.__qualname__})"
                raise AppLoadError(spec, reason)
            log_class = found
        for view in module_views:
            if views.setdefault(view.name, view) is not view:
                raise AppLoadError(spec, f"a second view named {view.name!r}")
    return App(log_class, tuple(v for v in views.values() if v not in DEFAULT_VIEWS))


def load_app(spec: str) -> tuple[type[AgentLog] | None, list[type[View]]]:
    """Import one ``module[:Name]``: its application class, if it names one, and the
    views its module defines."""
    module_name, _, attr = spec.strip().partition(":")
    if not module_name:
        raise AppLoadError(spec, "write module or module:Class")
    module = _import(spec, module_name)
    log_class = None
    if attr:
        obj = _attribute(spec, module, attr)
        if _subclass(obj, AgentLog):
            log_class = obj
        elif not _subclass(obj, Aggregate):
            raise AppLoadError(spec, f"{attr} is not an AgentLog or Aggregate subclass")
    return log_class, _views_of(spec, module)


def _import(spec: str, module_name: str) -> ModuleType:
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # modules in the current folder, as python -m
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name is not None and (module_name + ".").startswith(e.name + "."):
            raise AppLoadError(spec, f"no module named {e.name!r}") from None
        raise AppLoadError(spec, f"importing {module_name} failed: {_one_line(e)}") from None
    except Exception as e:  # the user's module raised while importing
        raise AppLoadError(spec, f"importing {module_name} failed: {_one_line(e)}") from None


def _attribute(spec: str, module: ModuleType, attr: str) -> Any:
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AppLoadError(spec, f"{module.__name__} has no attribute {attr!r}") from None
    return obj


def _views_of(spec: str, module: ModuleType) -> list[type[View]]:
    """The module's ``VIEWS``, else the concrete views defined in it."""
    declared = getattr(module, "VIEWS", None)
    if declared is not None:
        if not all(_subclass(v, View) for v in declared):
            raise AppLoadError(spec, f"{module.__name__}.VIEWS holds something not a View")
        return list(declared)
    return [
        obj
        for obj in vars(module).values()
        if _subclass(obj, View)
        and obj.__module__ == module.__name__
        and not inspect.isabstract(obj)
        and isinstance(getattr(obj, "name", None), str)
    ]


def _subclass(obj: Any, base: type[Any]) -> bool:
    return isinstance(obj, type) and issubclass(obj, base)


def _one_line(error: Exception) -> str:
    return f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0]}"
