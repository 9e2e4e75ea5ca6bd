"""An aggregate's ``State`` model as JSON, straight from its attributes.

The validated way, ``State.model_validate(agent.state()).model_dump_json()``, builds a
dict of the attributes, validates it into a new model (which hands nested models,
already validated, through as they are) and serializes that, the agent's config (the
same value event after event) included. Here the attributes, put in the model's field
order, are serialized as they are, strictly (``warnings="error"``): a value of a type
the model does not declare for its field (a list for a tuple, a text for an enum or a
time) fails, and the caller takes the validated way. Where the strict serializer
accepts the values, the validated model holds the same values and the text is the
same, byte for byte. A field holding a frozen model (the config) is written once per
value and kept. Measured with callgrind on the follow benchmark's agents: 160k
instructions an agent the validated way, 124k here.

That holds when validating would change nothing, so the direct way is only taken for
a ``State`` model whose own fields (nested models aside: validation keeps their
instances) have no validator functions, no constraints and no text transformations,
and for an aggregate whose public attributes are exactly the model's fields (an
extra attribute would fail validation: the validated way then says so).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticSerializationError, SchemaSerializer

from agentlog.domain import Aggregate
from agentlog.domain.trusted import made

_CHANGES = frozenset(
    {
        # constraints: validation refuses values the serializer writes
        "min_length",
        "max_length",
        "pattern",
        "gt",
        "ge",
        "lt",
        "le",
        "multiple_of",
        "max_digits",
        "decimal_places",
        "str_min_length",
        "str_max_length",
        # transformations
        "strip_whitespace",
        "to_lower",
        "to_upper",
        "str_strip_whitespace",
        "str_to_lower",
        "str_to_upper",
        "coerce_numbers_to_str",
        "post_init",
        "root_model",
        "custom_init",
    }
)
"""Keys of a core schema or its config (of the model's own fields) that, set, let
validation refuse or change a value that the serializer writes as it is."""


class _Plan:
    """How one aggregate class's ``State`` is written directly."""

    def __init__(self, model: type[BaseModel]) -> None:
        self.model = model
        self.names = tuple(model.model_fields)
        self.serializer: SchemaSerializer = model.__pydantic_serializer__
        self.shapes: list[frozenset[str]] = []  # attribute sets checked to fit the fields
        self.kept = _kept_fields(model)

    def fits(self, attrs: dict[str, Any]) -> bool:
        """Whether an aggregate's public attributes are the model's fields exactly."""
        keys = attrs.keys()
        for shape in self.shapes:
            if keys == shape:
                return True
        public = {k for k in attrs if not k.startswith("_")}
        if public != set(self.names):
            return False
        if len(self.shapes) < _SHAPES_KEPT:
            self.shapes.append(frozenset(keys))
        return True

    def json(self, attrs: dict[str, Any]) -> str | None:
        """The model's JSON of these attributes, or None if one does not fit its field."""
        fields = {name: attrs[name] for name in self.names}
        texts = [(kept, text) for kept in self.kept if (text := kept.swap(fields)) is not None]
        try:
            body = self.serializer.to_json(
                made(self.model, fields, fields.keys()), warnings="error"
            ).decode()
        except PydanticSerializationError:
            return None
        for kept, text in texts:  # the first is the field's: only flat values come before
            body = body.replace(kept.marker, kept.key + text, 1)
        return body


class _Kept:
    """A field that holds a frozen model (an agent's config): its JSON is made once per
    value and kept, and the model's JSON is made with an empty stand-in, replaced after.
    Frozen values are never changed in place (the aggregates' copies share them too)."""

    def __init__(self, name: str, annotation: Any) -> None:
        frozen = (
            isinstance(annotation, type)
            and issubclass(annotation, BaseModel)
            and annotation.model_config.get("frozen") is True
        )
        self.cls: type[BaseModel] | None = annotation if frozen else None
        self.name, self.key = name, f'"{name}":'
        self.marker = self.key + "{}"
        if self.cls is not None:
            self.stand_in = made(self.cls, {}, frozenset())
        self.texts: dict[int, tuple[BaseModel, str]] = {}  # by id: the value, its JSON

    def swap(self, fields: dict[str, Any]) -> str | None:
        """Put the stand-in in place of a value of the class; the value's JSON."""
        value = fields[self.name]
        if type(value) is not self.cls:
            return None  # None, a subclass: written the usual way
        found = self.texts.get(id(value))
        if found is None or found[0] is not value:
            text = value.__pydantic_serializer__.to_json(value, warnings="error").decode()
            if len(self.texts) >= _TEXTS_KEPT:
                self.texts.clear()
            found = self.texts[id(value)] = (value, text)
        fields[self.name] = self.stand_in
        return found[1]


def _kept_fields(model: type[BaseModel]) -> list[_Kept]:
    """The fields of frozen models whose JSON is kept, as far as every field before
    them is flat (its JSON cannot hold another field's ``"name":{}``)."""
    schema = model.__pydantic_core_schema__["schema"]
    found: list[_Kept] = []
    for name, field in model.model_fields.items():
        kept = _Kept(name, field.annotation)
        if kept.cls is not None:
            found.append(kept)
        if _kind(schema["fields"][name]["schema"]) not in _FLAT:
            break
    return found


def _kind(schema: dict[str, Any]) -> str:
    """A field's type, past its default and its ``| None``."""
    while schema["type"] in ("default", "nullable"):
        schema = schema["schema"]
    return str(schema["type"])


_FLAT = frozenset({"str", "int", "bool", "float", "enum", "none", "literal", "datetime", "date"})
_SHAPES_KEPT = 8
_TEXTS_KEPT = 4096
_PLANS: dict[type[BaseModel], _Plan | None] = {}


def direct_json(aggregate: Aggregate) -> str | None:
    """``State.model_validate(aggregate.state()).model_dump_json()``, made without the
    validation; None where that cannot be sure to give the same text (then validate)."""
    model: type[BaseModel] = type(aggregate).State
    if model not in _PLANS:
        _PLANS[model] = _Plan(model) if validation_keeps(model) else None
    plan = _PLANS[model]
    if plan is None:
        return None
    attrs = vars(aggregate)
    if not plan.fits(attrs):
        return None
    return plan.json(attrs)


def validation_keeps(model: type[BaseModel]) -> bool:
    """Whether validating values of the right types into ``model`` keeps them as they
    are: no validator functions, constraints or transformations on its own fields
    (nested models are kept as they are, unless they ask to be validated again)."""
    schema = model.__pydantic_core_schema__
    if schema.get("type") != "model" or schema.get("cls") is not model:
        return False  # a schema of definitions, a root model: not this simple case
    if schema["schema"].get("type") != "model-fields":
        return False
    return _plain(schema, root=True)


def _plain(node: Any, *, root: bool = False) -> bool:
    if isinstance(node, list):
        return all(_plain(item) for item in node)
    if not isinstance(node, dict):
        return True
    kind = node.get("type")
    if kind == "model" and not root:
        # A nested model: an instance is kept as it is, unless it revalidates.
        config = node.get("config") or {}
        return bool(config.get("revalidate_instances", "never") == "never")
    return not _changes(node) and all(
        _plain(value) for key, value in node.items() if key not in _SKIPPED
    )


def _changes(node: dict[str, Any]) -> bool:
    """Whether this schema node itself may refuse or change a value it validates."""
    kind = node.get("type")
    if isinstance(kind, str) and (kind.startswith("function") or kind == "definition-ref"):
        return True
    if node.get("allow_inf_nan") is False:
        return True
    return any(node[key] is not None and node[key] is not False for key in _CHANGES & node.keys())


_SKIPPED = frozenset({"serialization", "metadata", "cls", "ref"})
"""What does not validate: how values are written (the same both ways), notes, names."""
