"""Enum names come from the types that spell them: a new value renames nothing, and spellings that drift apart fail."""

from __future__ import annotations

import enum
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, Field

from app.core import openapi as contract
from app.main import ENUMS

Colour = Literal["red", "green"]


class Shade(enum.Enum):
    LIGHT = "light"
    DARK = "dark"


class Paint(BaseModel):
    colour: Colour | None = None
    finish: Annotated[Literal["matt", "gloss"], Field(description="How it shines.")] = "matt"


def _document(*properties: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    return {"paths": {}, "components": {"schemas": {"Paint": {"type": "object", "properties": dict(properties)}}}}


def test_values_come_from_literals_enums_and_fields() -> None:
    assert contract.enum_values(Colour) == ("red", "green")
    assert contract.enum_values(Colour | None) == ("red", "green")
    assert contract.enum_values(Shade) == ("light", "dark")
    assert contract.enum_values(Paint.model_fields["colour"]) == ("red", "green")
    assert contract.enum_values(Paint.model_fields["finish"]) == ("matt", "gloss")
    with pytest.raises(TypeError):
        contract.enum_values(str)


def test_a_new_value_keeps_the_name() -> None:
    wider = Literal["red", "green", "blue"]
    schema = _document(("colour", {"type": "string", "enum": ["red", "green", "blue"]}))
    contract.finish(schema, enum_names=contract.enum_names({"Colour": [wider]}))
    components = schema["components"]["schemas"]
    assert components["Paint"]["properties"]["colour"] == {"$ref": contract.REF + "Colour"}
    assert components["Colour"]["enum"] == ["red", "green", "blue"]


def test_an_unnamed_enum_is_named_after_its_owner() -> None:
    schema = _document(("colour", {"type": "string", "enum": ["red", "green"]}))
    contract.finish(schema, enum_names={})
    assert schema["components"]["schemas"]["Paint"]["properties"]["colour"] == {"$ref": contract.REF + "PaintColour"}


def test_spellings_that_disagree_fail() -> None:
    with pytest.raises(ValueError, match="spellings of enum Colour disagree"):
        contract.enum_names({"Colour": [Colour, Literal["red", "green", "blue"]]})


def test_two_names_for_one_value_set_fail() -> None:
    with pytest.raises(ValueError, match="Colour and Hue have the same values"):
        contract.enum_names({"Colour": [Colour], "Hue": [Literal["green", "red"]]})


def test_the_contract_names_every_listed_enum() -> None:
    """Each listed name is a component of the contract (a name for nothing would hide a typo)."""
    from app.main import create_app

    components = create_app().openapi()["components"]["schemas"]
    names = contract.enum_names(ENUMS)
    assert [n for n in names.values() if n not in components] == []
    for values, name in names.items():
        assert frozenset(components[name]["enum"]) == values, name
