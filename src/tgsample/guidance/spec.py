"""Guidance specs: one builder from YAML / dicts to guidance objects, and back
([`to_spec`][tgsample.guidance.spec.to_spec]).

A guidance declares its parameters as dataclass fields; fields made with [`part`][tgsample.guidance.spec.part] are
nested guidances and fields made with [`model_part`][tgsample.guidance.spec.model_part] are models (a teacher). So one
builder
serves built-ins and plugins alike:

```python
{"name": "interval", "sigma_hi": 5.0, "inner": {"name": "teacher", "lam": 0.3, "student": "cfg"}}
```

* a `part` value may be a spec (a registry name or `{"name": ..., **options}`) or an object;
* a `model_part` value may be a teachers registry name, a built model or a denoiser; left out, it is
  the run's teacher (the recipe's `teacher`), built by the resolver with `student=`;
* [`to_spec`][tgsample.guidance.spec.to_spec] writes every parameter (nested parts as specs, a model part as its
registry name),
  and `build(to_spec(g))` equals `g`.

A guidance class that is not a dataclass still builds from `{"name": ..., **options}` (its
options passed as they are), without nested parts.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterator, Mapping, Optional, Union

from ..errors import ConfigError, PluginError

__all__ = ["GuidanceSpec", "PART", "TeacherSource", "build", "model_part", "part", "parts", "to_spec", "walk"]

PART = "tgsample.part"
"""the dataclass-field metadata key that marks nested parts: `"guidance"` or `"model"`."""

GuidanceSpec = Union[None, str, Mapping[str, Any], Any]
"""What [`build`][tgsample.guidance.spec.build] takes: `None`, a registry name, a `{"name": ..., **options}` mapping, or
a guidance."""
TeacherSource = Callable[[Optional[str]], Any]
"""`source(name)` -> a teacher model for a registry name (`None`: the run's own teacher)."""


def part(default: Any = None, *, required: bool = False) -> Any:
    """A dataclass field holding a nested guidance (built from a spec by [`build`][tgsample.guidance.spec.build])."""
    meta = {PART: "guidance"}
    return dataclasses.field(metadata=meta) if required else dataclasses.field(default=default, metadata=meta)


def model_part(*, required: bool = True) -> Any:
    """A dataclass field holding a model (a teacher): a registry name in a spec, the model in the object."""
    meta = {PART: "model"}
    return dataclasses.field(metadata=meta) if required else dataclasses.field(default=None, metadata=meta)


def _fields(obj_or_cls: Any) -> tuple:
    return dataclasses.fields(obj_or_cls) if dataclasses.is_dataclass(obj_or_cls) else ()


def parts(guidance: Any) -> Iterator[Any]:
    """The nested guidances of `guidance` (its `part` fields that are set)."""
    for f in _fields(guidance):
        if f.metadata.get(PART) == "guidance" and getattr(guidance, f.name) is not None:
            yield getattr(guidance, f.name)


def walk(guidance: Any) -> Iterator[Any]:
    """`guidance` and every guidance nested in it, depth first."""
    yield guidance
    for p in parts(guidance):
        yield from walk(p)


# --- spec -> object ------------------------------------------------------------------------------


def missing_teacher() -> ConfigError:
    """The error of a teacher guidance that has no teacher (the one message, wherever it is found)."""
    from .. import registry

    return ConfigError(
        "teacher guidance needs a teacher: set teacher=<teachers registry name> (in the recipe, the settings "
        f"or the guidance spec); available teachers: {', '.join(registry.names('teachers'))}")


def _no_teacher(name: Optional[str]) -> Any:
    if name is None:
        raise missing_teacher()
    from .. import registry

    return registry.create("teachers", name)


def build(spec: GuidanceSpec, *, teacher: Optional[TeacherSource] = None) -> Any:
    """The guidance a spec describes.

    Args:
        spec: `None` (the conditional denoiser alone), a guidance registry name, a mapping
            `{"name": ..., **options}` (nestable), or a guidance object (returned as is).
        teacher: how a teacher is obtained for a [`model_part`][tgsample.guidance.spec.model_part]: `teacher(name)` gets
            a registry
            name from the spec, or `None` for "the run's teacher". Default: build a named teacher
            from the registry (without a student), and refuse a spec without one.

    Raises:
        ConfigError: a mapping without `name`, options a guidance does not take, a teacher guidance
            without a teacher, or a parameter out of range (the guidance's own check).
        UnknownNameError: an unknown guidance name (with the close ones).
    """
    teacher = teacher or _no_teacher
    if spec is None:
        from .cfg import NoGuidance

        return NoGuidance()
    if isinstance(spec, str):
        return _create(spec, {}, teacher)
    if isinstance(spec, Mapping):
        options = dict(spec)
        name = options.pop("name", None)
        if not isinstance(name, str):
            raise ConfigError(f"a guidance mapping needs a 'name' (a guidance registry name); got {dict(spec)!r}")
        return _create(name, options, teacher)
    if callable(spec) and hasattr(spec, "needs_step"):
        return spec
    raise ConfigError(f"guidance={spec!r} is not a guidance, a guidance registry name or a mapping with 'name'")


def _create(name: str, options: dict, teacher: TeacherSource) -> Any:
    from .. import registry

    obj = registry.get("guidance", name)
    if not isinstance(obj, type):  # a ready-made instance or a plain factory
        return registry.create("guidance", name, **options)
    return _instantiate(obj, options, teacher, registry.Site("guidance", name, f"{obj.__module__}:{obj.__qualname__}",
                                                             f"guidance {name!r}"))


def _instantiate(cls: type, options: dict, teacher: TeacherSource, site: Any) -> Any:
    from .. import registry

    registry.check_options(cls, options, site)
    for f in _fields(cls):
        kind = f.metadata.get(PART)
        if kind == "guidance" and f.name in options and options[f.name] is not None:
            options[f.name] = build(options[f.name], teacher=teacher)
        elif kind == "model":
            value = options.get(f.name)
            if value is None or isinstance(value, str):
                options[f.name] = teacher(value)
    try:
        product = cls(**options)
    except TypeError as exc:  # a missing required parameter
        raise ConfigError(f"{site.label} cannot be built from options {sorted(options)}: {exc}") from None
    return _checked_product(product, site)


def _checked_product(product: Any, site: Any) -> Any:
    from .base import is_guidance

    if not is_guidance(product):
        raise PluginError(
            f"{site.label} produced an object of type {type(product).__name__}, which does not conform to "
            "tgsample.guidance.Guidance (callable with needs_step and splits_direction attributes)")
    return product


# --- object -> spec ------------------------------------------------------------------------------


def _plain(value: Any, where: str) -> Any:
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v, where) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    raise ConfigError(f"{where}={value!r} cannot be written as a spec (a {type(value).__name__}); "
                      "give plain values (numbers, names, lists) to serialise a guidance")


def to_spec(guidance: Any) -> dict:
    """`{"name": <registry name>, **every parameter}`: nested guidances as specs, a teacher model as its
    registry name (left out when it has none). `build(to_spec(g), teacher=...)` equals `g`.

    Raises:
        ConfigError: the guidance's class is not registered, or a parameter is not plain data (a function).
    """
    from .. import registry

    name = registry.name_of("guidance", type(guidance))
    if name is None:
        raise ConfigError(f"{type(guidance).__qualname__} is not a registered guidance, so it has no spec; register it "
                          "(an entry point in tgsample.guidance, or tgsample.registry.register)")
    spec: dict[str, Any] = {"name": name}
    for f in _fields(guidance):
        value = getattr(guidance, f.name)
        kind = f.metadata.get(PART)
        if kind == "guidance":
            spec[f.name] = None if value is None else to_spec(value)
        elif kind == "model":
            model_name = getattr(value, "name", None)
            if isinstance(model_name, str) and hasattr(value, "denoiser"):
                spec[f.name] = model_name
        else:
            spec[f.name] = _plain(value, f"{name}.{f.name}")
    return spec


# --- registry kind ---------------------------------------------------------------------------------


def _is_guidance_class(obj: Any) -> bool:
    return isinstance(obj, type) and any("__call__" in vars(k) for k in obj.__mro__[:-1])


def conform(obj: Any, label: str) -> None:
    """What a `tgsample.guidance` registration must be: a guidance class, a factory or an instance."""
    import inspect

    from .base import is_guidance

    if inspect.isclass(obj):
        if not _is_guidance_class(obj):
            raise PluginError(
                f"{label} is the class {obj.__qualname__}, whose instances are not callable; a guidance "
                "class must define __call__(model, x, sigma, ctx) -> Estimate (tgsample.guidance.Guidance)")
        return
    if is_guidance(obj) or callable(obj):
        return
    raise PluginError(
        f"{label} is an object of type {type(obj).__name__}, not a guidance: register a tgsample.guidance.Guidance "
        "class, a factory returning one, or a Guidance instance")


def create(obj: Any, options: dict, site: Any) -> Any:
    """How [`tgsample.registry.create`][tgsample.registry.create] builds a guidance: an instance as is (no options), a
    class
    through [`build`][tgsample.guidance.spec.build]'s rules (nested parts from specs), a factory called with the
    options."""
    from .. import registry
    from .base import is_guidance

    if is_guidance(obj) and not isinstance(obj, type):
        if options:
            raise ConfigError(f"guidance {site.name!r} is a ready-made {obj!r} and takes no options (got {sorted(options)})")
        return obj
    if isinstance(obj, type):
        return _instantiate(obj, dict(options), _no_teacher, site)
    registry.check_options(obj, options, site)
    return _checked_product(obj(**options), site)

