"""The workflow config's schema layer: loading the schema, typing the strings of ``--config`` by it,
filling in its defaults and saying what is wrong in one line. Torch-free and free of Snakemake, like
:mod:`vsgm.workflow`, whose config check starts here.
"""

from __future__ import annotations

import os
from typing import Any

import yaml

from vsgm.sampler_names import SAMPLER_PATTERN


class ConfigError(ValueError):
    """A config the workflow refuses; the message is one line starting with 'invalid config:'."""


_YAML_TYPES = {
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
    "array": (list,),
    "object": (dict,),
}


def _resolve(schema, root):
    while isinstance(schema, dict) and "$ref" in schema:
        node = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = {**node, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def _types(schema, root) -> set[str]:
    schema = _resolve(schema, root)
    kinds = schema.get("type", [])
    found = set([kinds] if isinstance(kinds, str) else kinds)
    for option in schema.get("anyOf", []) + schema.get("oneOf", []):
        found |= _types(option, root)
    if "const" in schema or "enum" in schema:
        values = [schema["const"]] if "const" in schema else schema["enum"]
        found.update(type(v).__name__ for v in values)
    return found


def coerce(value: Any, schema: dict, root: dict | None = None) -> Any:
    """Type the string leaves of ``--config 'train={n_epochs: 1}'`` (Snakemake reads nested values
    as strings) by the schema: a string where the schema wants no string is read as YAML. Dicts are
    changed in place; the typed value is returned."""
    root = schema if root is None else root
    schema = _resolve(schema, root)
    if isinstance(value, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            sub = props.get(key, extra if isinstance(extra, dict) else None)
            if sub is not None:
                value[key] = coerce(item, sub, root)
        return value
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [coerce(item, schema["items"], root) for item in value]
    if isinstance(value, str):
        wanted = _types(schema, root)
        if wanted and "string" not in wanted and "str" not in wanted:
            try:
                parsed = yaml.safe_load(value)
            except yaml.YAMLError:
                return value
            allowed = tuple(t for w in wanted for t in _YAML_TYPES.get(w, ()))
            if allowed and isinstance(parsed, allowed):
                return coerce(parsed, schema, root)
    return value


def _validator(schema):
    """jsonschema's validator for the schema that fills in defaults as it goes (the recipe of the
    jsonschema FAQ, as snakemake.utils.validate applies it)."""
    from jsonschema import validators

    base = validators.validator_for(schema)
    validate_properties = base.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        for name, subschema in properties.items():
            if "default" in subschema:
                instance.setdefault(name, subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return validators.extend(base, {"properties": set_defaults})(schema)


def explain(error) -> str:
    """One line naming the offending key of a jsonschema error: unknown keys with the valid ones,
    else jsonschema's message."""
    where = ".".join(str(p) for p in error.absolute_path) or "top level"
    known = error.schema.get("properties") if isinstance(error.schema, dict) else None
    if error.validator == "additionalProperties" and known and isinstance(error.instance, dict):
        unknown = sorted(set(error.instance) - set(known))
        prefix = "" if where == "top level" else f"{where}."
        keys = ", ".join(f"{prefix}{k}" for k in unknown)
        return f"unknown key {keys} (valid in {where}: {', '.join(known)})"
    return f"{where}: {error.message}"


def schema_problem(config: dict, schema: dict) -> str | None:
    """Type the config's strings by the schema, fill in its defaults (in place) and validate it:
    the first error in one line, or None."""
    import jsonschema

    coerce(config, schema)
    try:
        _validator(schema).validate(config)
    except jsonschema.ValidationError as error:
        return explain(error)
    return None


def load_schema(path: str | os.PathLike) -> dict:
    """The workflow's schema, its sampler names' pattern taken from vsgm.sampler_names (one list)."""
    with open(path) as f:
        schema = yaml.safe_load(f)
    schema["$defs"]["sampler"]["pattern"] = SAMPLER_PATTERN.pattern
    return schema
