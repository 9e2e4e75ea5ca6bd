"""Pydantic models made from values that are already of their fields' types.

A worker's step makes a few small models from values that were validated where they
came from: a call's record from its validated event, the model's messages from stored
events, a token sum of two validated counts. Validating them again costs more than the
rest of making them. :func:`made` builds what validation would give for such values,
without validating: the same fields, equal and hashing alike. Callers pass only what
validation would pass through unchanged; anything from outside (a person, a model, a
stored row) is validated as before.
"""

from __future__ import annotations

from collections.abc import Set
from typing import Any, TypeVar

from pydantic import BaseModel

__all__ = ["made"]

M = TypeVar("M", bound=BaseModel)
_set = object.__setattr__


def made(cls: type[M], fields: dict[str, Any], given: Set[str]) -> M:
    """An instance of ``cls`` holding ``fields`` as they are (not validated).

    ``fields`` holds every field of ``cls``, in its declared order, each already of its
    type (what validation would keep as it is); it becomes the instance's ``__dict__``:
    pass a dict of its own. ``given``: the fields a caller gave (``model_fields_set``),
    the others holding their defaults."""
    model = cls.__new__(cls)
    _set(model, "__dict__", fields)
    _set(model, "__pydantic_fields_set__", set(given))
    _set(model, "__pydantic_extra__", None)
    _set(model, "__pydantic_private__", None)
    return model
