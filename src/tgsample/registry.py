"""Named components from installed packages: guidances, solvers, schedules, students, teachers, recipes.

Every kind is an entry-point group `tgsample.<kind>`. tgsample's own `pyproject.toml`
declares the built-ins there, so a built-in and a third-party plugin are found the same way:

```text
[project.entry-points."tgsample.guidance"]
apg = "tgsample_apg.guidance:APG"
```

Rules (see `docs/plugins.md`):

* **Lazy.** Discovery reads installed metadata only (`importlib_metadata`); an entry point is
  imported on first use and cached. This module imports nothing heavy.
* **Isolated.** A plugin that fails to import, points at a missing attribute or registers a
  non-conforming object is still listed; using *it* raises [`PluginError`][tgsample.errors.PluginError]
  naming the entry point, its distribution and version (the original exception chained).
  Nothing else is affected.
* **Explicit conflicts.** A built-in name wins over a plugin registering the same name (a
  [`PluginConflictWarning`][tgsample.registry.PluginConflictWarning] says so on use); two plugins registering the same
  name make
  that name ambiguous ([`PluginError`][tgsample.errors.PluginError] on use, naming both). Both are shown
  by `tgsample list`. In-process [`register`][tgsample.registry.register] of a taken name needs `override=True`.
* **Typo-friendly.** An unknown name raises [`UnknownNameError`][tgsample.errors.UnknownNameError] listing
  what is available and the closest names.
* `TGSAMPLE_DISABLE_PLUGIN_AUTOLOAD=1` reads only tgsample's own entry points.
* **Kind-agnostic.** Discovery, precedence, isolation and caching are the same for every kind; what a
  registration of a kind must be, and how [`create`][tgsample.registry.create] builds from it, is that kind's
  [`Kind`][tgsample.registry.Kind] (a conformance check and a builder supplied by the kind's own module, imported on
  first load only). [`register_kind`][tgsample.registry.register_kind] adds a kind.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import os
import threading
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Optional, Union

from .errors import ConfigError, PluginError, UnknownNameError

GROUP_PREFIX = "tgsample."
"""The prefix of the entry-point groups: `tgsample.<kind>`."""
BUILTIN_DIST = "tgsample"
"""The distribution whose entry points are the built-ins."""
DISABLE_ENV = "TGSAMPLE_DISABLE_PLUGIN_AUTOLOAD"
"""The environment variable that, set to 1 / true / yes / on, loads only the built-ins (no plugins)."""
IN_PROCESS = "<in-process>"
"""The distribution name of a registration made in this process with [`register`][tgsample.registry.register]."""

__all__ = [
    "KINDS", "DISABLE_ENV", "Entry", "Kind", "PluginConflictWarning", "Site", "autoload_disabled", "check",
    "check_create", "check_options", "create", "entries", "get", "group", "kind_spec", "name_of", "names", "refresh",
    "register", "register_kind", "unregister",
]


@dataclass(frozen=True)
class Kind:
    """What the registrations of one kind must be, and how [`create`][tgsample.registry.create] builds from one.

    Supplied by the kind: `conform` and `build` may be `"module:function"` references into the
    kind's own module, imported only when a registration is loaded (discovery and listing stay light).

    Attributes:
        name: the kind; its entry-point group is `tgsample.<name>`.
        expects: what a registration is, in words (error messages, `tgsample list`).
        conform: `conform(obj, label)` raises [`PluginError`][tgsample.errors.PluginError] (naming `label`) for a
            registration that does not conform; `None`: it must be callable.
        build: how [`create`][tgsample.registry.create] builds from a registration: `"bind"` (a function, options bound
            with
            `functools.partial`), `"call"` (a factory called with the options), `"as_is"` (taken as is,
            no options), or `build(obj, options, site) -> product` (a [`Site`][tgsample.registry.Site] for messages and
            option checks).
        product: `"module:Class"`: what a `"call"` build must return (checked, else PluginError).
    """

    name: str
    expects: str
    conform: Union[None, str, Callable[[Any, str], None]] = None
    build: Union[str, Callable[..., Any]] = "call"
    product: Optional[str] = None

    def check(self, obj: Any, label: str) -> None:
        """Raise [`PluginError`][tgsample.errors.PluginError] unless `obj` may be registered under this kind."""
        if self.conform is None:
            if not callable(obj):
                raise PluginError(f"{label} is an object of type {type(obj).__name__}, which is not callable; "
                                  f"expected {self.expects}")
            return
        _ref(self.conform)(obj, label)

    def make(self, obj: Any, options: dict, site: "Site") -> Any:
        """Build the product of registration `obj` with `options`."""
        if self.build == "as_is":
            if options:
                raise ConfigError(f"{site.kind} {site.name!r} takes no options (got {sorted(options)})")
            return obj
        if self.build == "bind":
            if not options:
                return obj
            check_options(obj, options, site)
            return functools.partial(obj, **options)
        if self.build == "call":
            check_options(obj, options, site)
            product = obj(**options)
            if self.product is not None and not isinstance(product, _ref(self.product)):
                raise PluginError(f"{site.label} produced an object of type {type(product).__name__}; expected "
                                  f"{self.expects}")
            return product
        return _ref(self.build)(obj, options, site)


@dataclass(frozen=True)
class Site:
    """Where a registration comes from, for builders' messages: `kind`, `name`, `value` and a `label`."""

    kind: str
    name: str
    value: str
    label: str


def _ref(target: Any) -> Any:
    """A `"module:attr"` reference, imported; anything else as is."""
    if not isinstance(target, str):
        return target
    import importlib

    module, _, attr = target.partition(":")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


_MODEL = "a factory returning a tgsample.models.Model"
_KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind("guidance", "a tgsample.guidance.Guidance class, a factory returning one, or a Guidance instance",
         conform="tgsample.guidance.spec:conform", build="tgsample.guidance.spec:create"),
    Kind("solvers", "a solver function solver(model, x, sigmas, **options) -> x", build="bind"),
    Kind("schedules", "a schedule function schedule(steps, model=None, **options) -> sigmas", build="bind"),
    Kind("students", _MODEL, build="call", product="tgsample.models.base:Model"),
    Kind("teachers", _MODEL, build="call", product="tgsample.models.base:Model"),
    Kind("recipes", "a dict of variant suffix -> tgsample.recipes.Recipe (e.g. '' and '++')",
         conform="tgsample.recipes:conform", build="as_is"),
)}
KINDS: tuple[str, ...] = tuple(_KINDS)
"""the registry kinds (each an entry-point group `tgsample.<kind>`)."""


def kind_spec(kind: str) -> Kind:
    """The [`Kind`][tgsample.registry.Kind] of `kind` ([`UnknownNameError`][tgsample.errors.UnknownNameError] for an
    unknown kind)."""
    return _KINDS[check_kind(kind)]


def register_kind(kind: Kind) -> Kind:
    """Add a registry kind (its entry-point group is `tgsample.<kind.name>`); returns it."""
    global KINDS
    with _lock:
        if kind.name in _KINDS and _KINDS[kind.name] != kind:
            raise ConfigError(f"registry kind {kind.name!r} already exists")
        _KINDS[kind.name] = kind
        KINDS = tuple(_KINDS)
        _state.local.setdefault(kind.name, {})
        _state.discovered = {}
    return kind


class PluginConflictWarning(UserWarning):
    """A plugin registers a name that a built-in already owns; the built-in is used."""


def group(kind: str) -> str:
    """The entry-point group of `kind`: `"tgsample." + kind`."""
    return GROUP_PREFIX + check_kind(kind)


def autoload_disabled() -> bool:
    """True when `TGSAMPLE_DISABLE_PLUGIN_AUTOLOAD` is set to a true value (1, true, yes, on)."""
    return os.environ.get(DISABLE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


# --- records -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One registration of a name, as [`entries`][tgsample.registry.entries] and `tgsample list` report it.

    Attributes:
        name: the registered name (with `kind`, the registry key).
        kind: the registry kind (`"solvers"`, ...).
        value: where it lives, `"module:attr"`.
        dist: the distribution that declares it (`"<in-process>"` for [`register`][tgsample.registry.register]).
        version: that distribution's version.
        builtin: declared by tgsample itself.
        active: [`get`][tgsample.registry.get] `(kind, name)` resolves to this registration.
        status: `"unloaded"`, `"loaded"` or `"failed"`.
        error: why loading failed (`None` unless failed).
        conflict: who else registers the name and what happens, in words (`None` if nobody).
        ambiguous: more than one plugin registers the name and no built-in owns it (using it is an error).
    """

    name: str
    kind: str
    value: str
    dist: str
    version: str
    builtin: bool
    active: bool
    status: str
    error: Optional[str] = None
    conflict: Optional[str] = None
    ambiguous: bool = False

    def as_dict(self) -> dict:
        """The entry as a plain dict (what `tgsample list --json` prints)."""
        return asdict(self)


@dataclass(eq=False)
class _Source:
    """A registration plus its load cache."""

    kind: str
    name: str
    value: str
    dist: str
    version: str
    builtin: bool
    entry_point: Any = None
    """importlib_metadata.EntryPoint, or None for in-process"""
    obj: Any = None
    loaded: bool = False
    error: Optional[PluginError] = None

    def describe(self) -> str:
        return " ".join(p for p in (self.dist, self.version, f"({self.value})") if p)

    def label(self) -> str:
        return f"{self.kind} {self.name!r} = {self.value} from {self.dist} {self.version}".rstrip()


@dataclass
class _State:
    discovered: dict[str, dict[str, list[_Source]]] = field(default_factory=dict)
    local: dict[str, dict[str, _Source]] = field(default_factory=lambda: {k: {} for k in _KINDS})
    warned: set = field(default_factory=set)
    builtin_found: bool = True


_lock = threading.RLock()
_state = _State()


# --- discovery ---------------------------------------------------------------------------


def check_kind(kind: str) -> str:
    """Return `kind` if it is one of [`KINDS`][tgsample.registry.KINDS], else raise
    [`UnknownNameError`][tgsample.errors.UnknownNameError]."""
    if kind in KINDS:
        return kind
    close = difflib.get_close_matches(str(kind), KINDS, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise UnknownNameError(f"unknown registry kind {kind!r}{hint} Kinds: {', '.join(KINDS)}")


def _entry_points() -> Iterable[Any]:
    import importlib_metadata as md  # ~25 ms; only on first use

    if autoload_disabled():
        try:
            return md.distribution(BUILTIN_DIST).entry_points
        except md.PackageNotFoundError:
            return ()
    return md.entry_points()


@functools.lru_cache(maxsize=None)
def _dist_info(dist: Any) -> tuple[str, str]:
    """`(name, version)` of a distribution, from its `NAME-VERSION.dist-info` folder name when it
    has one (no METADATA parsing: that costs ~15 ms for a long README), else from METADATA."""
    if dist is None:
        return "<unknown>", "?"
    stem = getattr(getattr(dist, "_path", None), "name", "")
    if stem.endswith(".dist-info") and stem.count("-") == 1:
        name, version = stem[: -len(".dist-info")].split("-")
        return name.replace("_", "-"), version
    try:
        meta = dist.metadata
        return meta["Name"] or "<unknown>", meta["Version"] or "?"
    except Exception:  # a dist-info without readable METADATA: still usable
        return getattr(dist, "_normalized_name", None) or "<unknown>", "?"


def _is_builtin(dist_name: str) -> bool:
    return dist_name.lower().replace("_", "-") == BUILTIN_DIST


def _discover() -> dict[str, dict[str, list[_Source]]]:
    """Read every `tgsample.*` entry point once (metadata only) and cache the result."""
    with _lock:
        if _state.discovered:
            return _state.discovered
        found: dict[str, dict[str, list[_Source]]] = {k: {} for k in KINDS}
        groups = {GROUP_PREFIX + k: k for k in KINDS}
        builtin_seen = False
        for ep in _entry_points():
            kind = groups.get(ep.group)
            if kind is None:
                continue
            dist, version = _dist_info(getattr(ep, "dist", None))
            builtin = _is_builtin(dist)
            builtin_seen = builtin_seen or builtin
            found[kind].setdefault(ep.name, []).append(
                _Source(kind, ep.name, ep.value, dist, version, builtin, entry_point=ep)
            )
        for by_name in found.values():
            for sources in by_name.values():
                sources.sort(key=lambda s: (not s.builtin, s.dist.lower()))
        _state.discovered = found
        _state.builtin_found = builtin_seen
        return found


def refresh() -> None:
    """Forget discovered entry points and loaded objects (after installing a plugin, or in tests).

    In-process [`register`][tgsample.registry.register] calls are kept. Import caches are invalidated too.
    """
    import importlib

    with _lock:
        _state.discovered = {}
        _state.warned.clear()
        _dist_info.cache_clear()
        importlib.invalidate_caches()


# --- resolution --------------------------------------------------------------------------


def _conflict(kind: str, name: str) -> Optional[str]:
    sources = _discover()[kind].get(name, [])
    if len(sources) < 2:
        return None
    who = " and ".join(s.describe() for s in sources)
    if sources[0].builtin:
        return f"built-in wins over {' and '.join(s.describe() for s in sources[1:])}"
    return f"ambiguous: registered by {who}"


def _resolve(kind: str, name: str) -> _Source:
    """The registration `get(kind, name)` uses, or a typed error."""
    check_kind(kind)
    if not isinstance(name, str):
        raise ConfigError(f"a {kind} name must be a string, got {type(name).__name__} {name!r}")
    local = _state.local[kind].get(name)
    if local is not None:
        return local
    sources = _discover()[kind].get(name)
    if not sources:
        raise UnknownNameError(_unknown_message(kind, name))
    if len(sources) > 1:
        if not sources[0].builtin:
            raise PluginError(
                f"{kind} name {name!r} is registered by more than one distribution: "
                f"{' and '.join(s.describe() for s in sources)}. Uninstall one, or pick one in-process "
                f"with tgsample.registry.register({kind!r}, {name!r}, obj, override=True)"
            )
        if (kind, name) not in _state.warned:
            _state.warned.add((kind, name))
            warnings.warn(
                f"{kind} name {name!r} is built into tgsample; ignoring the plugin(s) that also register it: "
                f"{' and '.join(s.describe() for s in sources[1:])}",
                PluginConflictWarning,
                stacklevel=4,
            )
    return sources[0]


def _unknown_message(kind: str, name: str) -> str:
    available = names(kind)
    close = difflib.get_close_matches(name, available, n=3, cutoff=0.6)
    msg = f"unknown {kind} name {name!r}"
    if close:
        msg += f"; did you mean {', '.join(repr(c) for c in close)}?"
    msg += f" Available {kind}: {', '.join(available) if available else '(none)'}"
    if not _state.builtin_found and not autoload_disabled():
        msg += ". tgsample's own entry points were not found: install it (pip install -e .)"
    elif autoload_disabled():
        msg += f" (third-party plugins are disabled by {DISABLE_ENV})"
    return msg


# --- loading and conformance ------------------------------------------------------------


def _load(src: _Source) -> Any:
    with _lock:
        if src.loaded:
            return src.obj
        if src.error is not None:
            raise src.error
        try:
            obj = src.entry_point.load()
        except (Exception, SystemExit) as exc:  # any import-time failure of a plugin stays the plugin's (sys.exit too)
            src.error = PluginError(f"cannot load {src.label()}: {type(exc).__name__}: {exc}")
            src.error.__cause__ = exc
            raise src.error from exc
        try:
            _KINDS[src.kind].check(obj, src.label())
        except PluginError as exc:
            src.error = exc
            raise
        src.obj, src.loaded = obj, True
        return obj


def check_options(fn: Callable, options: dict, site: Site) -> None:
    """Refuse options `fn` does not accept ([`ConfigError`][tgsample.errors.ConfigError] naming them, the accepted ones
    and the
    closest names); a function with `**kwargs` accepts anything."""
    import inspect
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return
    params = sig.parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    unknown = sorted(set(options) - set(params))
    if unknown:
        keyword = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        accepted = [p for p, param in params.items() if param.kind in keyword]
        hints = {u: difflib.get_close_matches(u, accepted, n=1, cutoff=0.6) for u in unknown}
        said = ", ".join(f"{u!r}" + (f" (did you mean {h[0]!r}?)" if h else "") for u, h in hints.items())
        raise ConfigError(
            f"{site.kind} {site.name!r} ({site.value}) does not accept option(s) {said}; "
            f"its options are: {', '.join(accepted) or '(none)'}"
        )


# --- public API --------------------------------------------------------------------------


def get(kind: str, name: str) -> Any:
    """The object registered as `name` under `kind` (a class, factory or function), loaded on first use.

    Raises:
        UnknownNameError: `kind` or `name` is not registered (with close matches).
        PluginError: the entry point failed to import or conform, or two plugins claim `name`.
    """
    with _lock:
        src = _resolve(kind, name)
        return src.obj if src.loaded else _load(src)


def names(kind: str, pattern: str = "*") -> list[str]:
    """Sorted registered names of `kind` matching the shell-style `pattern` (`fnmatch`)."""
    check_kind(kind)
    with _lock:
        every = set(_discover()[kind]) | set(_state.local[kind])
    return sorted(n for n in every if fnmatch.fnmatchcase(n, pattern))


def register(kind: str, name: str, obj: Any = None, *, override: bool = False) -> Any:
    """Register `obj` as `name` in this process; usable as a call or a decorator:

    ```python
    @register("guidance", "my_cfg")
    class MyCFG(Guidance): ...

    register("schedules", "mine", my_schedule)
    ```

    A name that is already registered (built-in, plugin or an earlier call) needs
    `override=True`, else [`ConfigError`][tgsample.errors.ConfigError]. [`unregister`][tgsample.registry.unregister]
    undoes it.
    """
    check_kind(kind)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"a {kind} name must be a non-empty string, got {name!r}")

    def add(target: Any) -> Any:
        value = f"{getattr(target, '__module__', '?')}:{getattr(target, '__qualname__', type(target).__name__)}"
        src = _Source(kind, name, value, IN_PROCESS, "", False, obj=target)
        _KINDS[kind].check(target, src.label())
        with _lock:
            if not override:
                taken = _state.local[kind].get(name) or next(iter(_discover()[kind].get(name, [])), None)
                if taken is not None:
                    raise ConfigError(
                        f"{kind} name {name!r} is already registered by {taken.describe()}; "
                        "pass override=True to replace it in this process"
                    )
            src.loaded = True
            _state.local[kind][name] = src
        return target

    return add if obj is None else add(obj)


def unregister(kind: str, name: str) -> None:
    """Remove an in-process registration (entry points are unaffected)."""
    check_kind(kind)
    with _lock:
        if _state.local[kind].pop(name, None) is None:
            raise UnknownNameError(f"{kind} name {name!r} was not registered in-process")


def create(kind: str, name_or_obj: Any, **options: Any) -> Any:
    """Build a component from a name, or pass an object through.

    * a string: look it up; guidances, students and teachers are factories called with
      `options` (the product is checked: a `Guidance`, a `Model`); solvers and schedules are
      functions returned with `options` bound (`functools.partial`), or as is without options;
      a registered `Guidance` *instance* is returned as is;
    * anything else: returned unchanged (`options` must then be empty).

    Options the factory does not accept raise [`ConfigError`][tgsample.errors.ConfigError] naming them and the accepted
    ones.
    """
    if not isinstance(name_or_obj, str):
        if options:
            raise ConfigError(
                f"options {sorted(options)} were given with an already-built {kind} object "
                f"{type(name_or_obj).__name__}; pass a registered name to build it with options"
            )
        return name_or_obj
    name = name_or_obj
    with _lock:
        src = _resolve(kind, name)
    obj = src.obj if src.loaded else _load(src)
    return _KINDS[kind].make(obj, dict(options), Site(kind, name, src.value, src.label()))


def check_create(kind: str, name: str, options: Optional[dict] = None) -> None:
    """Check that [`create`][tgsample.registry.create] would accept `options` for `name` without building anything (the
    registration is loaded; unknown names and options raise as [`create`][tgsample.registry.create] would)."""
    with _lock:
        src = _resolve(kind, name)
    obj = src.obj if src.loaded else _load(src)
    spec = _KINDS[kind]
    if options and spec.build == "as_is":
        raise ConfigError(f"{kind} {name!r} takes no options (got {sorted(options)})")
    if options and callable(obj):
        check_options(obj, dict(options), Site(kind, name, src.value, src.label()))


def name_of(kind: str, obj: Any) -> Optional[str]:
    """The name `obj` is registered under (the active registration of `kind` that *is* `obj`), or `None`.

    Loads only registrations whose `value` ends in `obj`'s `__name__` (and in-process ones)."""
    attr = getattr(obj, "__name__", None)
    for name in names(kind):
        with _lock:
            try:
                src = _resolve(kind, name)
            except (PluginError, UnknownNameError):
                continue
        if not src.loaded and (attr is None or src.value.rpartition(":")[2].rpartition(".")[2] != attr):
            continue
        try:
            if get(kind, name) is obj:
                return name
        except PluginError:
            continue
    return None


def entries(kind: Optional[str] = None) -> list[Entry]:
    """Every registration (of `kind`, or all kinds), sorted by kind and name; loads nothing."""
    kinds = KINDS if kind is None else (check_kind(kind),)
    out: list[Entry] = []
    with _lock:
        found = _discover()
        for k in kinds:
            for name in sorted(set(found[k]) | set(_state.local[k])):
                local = _state.local[k].get(name)
                sources = found[k].get(name, [])
                conflict = _conflict(k, name)
                ambiguous = len(sources) > 1 and not sources[0].builtin
                if local is not None:
                    out.append(_entry(local, active=True, conflict=None))
                for i, src in enumerate(sources):
                    active = local is None and i == 0 and not ambiguous
                    note = "overridden in-process" if local is not None else conflict
                    out.append(_entry(src, active=active, conflict=note, ambiguous=ambiguous and local is None))
    return out


def _entry(src: _Source, *, active: bool, conflict: Optional[str], ambiguous: bool = False) -> Entry:
    status = "loaded" if src.loaded else "failed" if src.error is not None else "unloaded"
    error = None
    if src.error is not None:
        cause = src.error.__cause__
        error = f"{type(cause).__name__}: {cause}" if cause is not None else str(src.error)
    return Entry(src.name, src.kind, src.value, src.dist, src.version, src.builtin, active, status, error, conflict,
                 ambiguous)


def check(kind: Optional[str] = None, pattern: str = "*") -> list[Entry]:
    """Load every registration of `kind` (all kinds by default) whose name matches `pattern`,
    like `tgsample list --check`; returns the matching, updated [`entries`][tgsample.registry.entries]. Never raises
    for a broken plugin: its record says `failed` and why."""
    with _lock:
        found = _discover()
        for k in KINDS if kind is None else (check_kind(kind),):
            for name, sources in found[k].items():
                if not fnmatch.fnmatchcase(name, pattern):
                    continue
                for src in sources:
                    try:
                        _load(src)
                    except PluginError:
                        pass
    return [e for e in entries(kind) if fnmatch.fnmatchcase(e.name, pattern)]
