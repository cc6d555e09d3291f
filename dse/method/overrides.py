"""`--set KEY=VALUE` overrides of an experiment file, applied to its mapping before it is
checked (dse.method.experiment.load): `n=8`, `train.epochs=1`, `spaces=[xa, xb]`, values
read as YAML."""

from __future__ import annotations

import yaml

from dse.errors import ArgumentError


def parse_set(text: str) -> tuple[list[str], object]:
    """'train.epochs=1' → (['train', 'epochs'], 1); the value is read as YAML."""
    key, sep, value = text.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(p.strip() for p in parts):
        raise ArgumentError("sets", f"{text!r} is not KEY=VALUE (e.g. n=16, train.epochs=1)")
    try:
        v = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        v = value
    return [p.strip() for p in parts], v


def apply_sets(config: dict, sets=()) -> dict:
    """The mapping with each override applied: a KEY=VALUE text, or its parse_set value."""
    out = dict(config)
    for item in sets:
        parts, v = parse_set(item) if isinstance(item, str) else item
        text = f"{'.'.join(parts)}={v}"
        node = out
        for p in parts[:-1]:
            child = node.get(p)
            if child is None:
                child = {}
            elif not isinstance(child, dict):
                raise ArgumentError("sets", f"{text!r}: {p} is not a mapping")
            node[p] = child = dict(child)
            node = child
        node[parts[-1]] = v
    return out
