"""Services: classes with typed methods, and the registry that calls them.

A service is a class with a ``name`` whose methods are marked with
:func:`method`.  Each method takes one pydantic params model and returns a
pydantic result model (or ``None``); the registry validates params at the
edge, calls the method, and serialises the result::

    class Greeter(Service):
        name = "greeter"

        @method(mutates=False)
        async def hello(self, p: HelloParams) -> HelloResult:
            return HelloResult(text=f"hello {p.who}")
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterator, TypeVar, cast, get_origin, get_type_hints

from pydantic import BaseModel, ConfigDict, ValidationError

from ._errors import CloudisenseError, InvalidParams, UnknownMethod, UnknownService

log = logging.getLogger(__name__)


class _AnyObject(BaseModel):
    """A free-form JSON object (methods annotated ``-> dict``)."""

    model_config = ConfigDict(extra="allow")


class NoParams(BaseModel):
    """A method without parameters."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class MethodSpec:
    name: str
    params: type[BaseModel]
    result: type[BaseModel] | None
    mutates: bool
    description: str
    func: Callable[..., Any] = field(repr=False)
    takes_params: bool = True
    #: an ``async def`` (run in a task of its own); else a plain ``def``, answered at once
    is_async: bool = True

    def describe(self) -> dict[str, Any]:
        return {
            "description": self.description,
            "mutates": self.mutates,
            "params": self.params.model_json_schema(),
            "result": self.result.model_json_schema() if self.result else {"type": "null"},
        }


_F = TypeVar("_F", bound=Callable[..., Any])


def method(*, mutates: bool, description: str | None = None) -> Callable[[_F], _F]:
    """Mark a method of a :class:`Service` as callable over the wire.

    An ``async def`` runs in a task of its own.  A plain ``def`` (a method that never waits: a status
    read, an echo) is answered at once, in the task that received the call: no task, no loop turn.
    It can't enter what binds to the task it runs in (``asyncio.timeout``, a ``TaskGroup``), since it
    can't ``async with``; a method that must wait is an ``async def``.
    """

    def mark(func: _F) -> _F:
        if not inspect.isfunction(func):
            raise TypeError(f"@method marks a function (a def or an async def), not {func!r}")
        if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
            raise TypeError(f"{func.__qualname__} is a generator: a method returns its result")
        cast(Any, func).__cloudisense_method__ = {"mutates": mutates, "description": description}
        return func

    return mark


class Service:
    """Base class of services.  ``node`` is set when the service is registered."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""

    def __init__(self) -> None:
        self.node: Any = None

    async def on_start(self) -> None:
        """Called when the node starts (after registration)."""

    async def on_stop(self) -> None:
        """Called when the node stops."""

    @classmethod
    def methods(cls) -> dict[str, MethodSpec]:
        specs: dict[str, MethodSpec] = {}
        for attr, func in inspect.getmembers(cls, inspect.isfunction):
            meta = getattr(func, "__cloudisense_method__", None)
            if meta is None:
                continue
            hints = get_type_hints(func)
            sig = list(inspect.signature(func).parameters.values())[1:]
            if len(sig) > 1:
                raise TypeError(f"{cls.__name__}.{attr} takes at most one params argument")
            params = hints.get(sig[0].name) if sig else NoParams
            if not (isinstance(params, type) and issubclass(params, BaseModel)):
                raise TypeError(f"{cls.__name__}.{attr}: params must be a pydantic model")
            result = hints.get("return")
            if result is type(None):
                result = None
            if result is dict or get_origin(result) is dict:   # dict or dict[str, Any]: any JSON object
                result = _AnyObject
            if result is not None and not (isinstance(result, type) and issubclass(result, BaseModel)):
                raise TypeError(f"{cls.__name__}.{attr}: result must be a pydantic model or None")
            doc = meta["description"] or inspect.getdoc(func) or ""
            specs[attr] = MethodSpec(attr, params, result, meta["mutates"], doc.strip(), func, bool(sig),
                                     inspect.iscoroutinefunction(func))
        return specs


def _format_validation(e: ValidationError) -> str:
    parts = []
    for err in e.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "params"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown parameter"
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)


class Registry:
    """Services of one node, by name; validates params and calls methods."""

    def __init__(self) -> None:
        self._services: dict[str, Service] = {}
        self._methods: dict[str, dict[str, MethodSpec]] = {}
        self._mutating: dict[tuple[str, str], bool] = {}   # (service, method) -> mutates: one lookup per call
        self._describe_cache: dict[str, Any] | None = None

    def add(self, service: Service) -> None:
        if not service.name:
            raise TypeError(f"{type(service).__name__} has no name")
        if service.name in self._services:
            raise ValueError(f"service {service.name!r} is registered twice")
        self._services[service.name] = service
        self._methods[service.name] = service.methods()
        self._mutating.update(((service.name, m), spec.mutates) for m, spec in self._methods[service.name].items())
        self._describe_cache = None

    def __iter__(self) -> Iterator[Service]:
        return iter(self._services.values())

    def __contains__(self, name: str) -> bool:
        return name in self._services

    def get(self, name: str) -> Service:
        return self._services[name]

    def spec(self, service: str, method_name: str) -> MethodSpec:
        methods = self._methods.get(service)
        if methods is None:
            raise UnknownService(f"no service {service!r} (services: {', '.join(sorted(self._methods))})")
        spec = methods.get(method_name)
        if spec is None:
            raise UnknownMethod(f"service {service!r} has no method {method_name!r} "
                                f"(methods: {', '.join(sorted(methods))})")
        return spec

    def is_async(self, service: str, method_name: str) -> bool:
        """Whether ``service.method`` is an ``async def`` of a service here (False: a plain ``def``, or
        no such method)."""
        spec = self._methods.get(service, {}).get(method_name)
        return spec is not None and spec.is_async

    def validate(self, spec: MethodSpec, params: Any) -> BaseModel:
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise InvalidParams(f"params of {spec.name} must be an object")
        try:
            return spec.params.model_validate(params)
        except ValidationError as e:
            raise InvalidParams(f"invalid params for {spec.name}: {_format_validation(e)}") from None
        except (RecursionError, ValueError) as e:  # e.g. nesting deeper than pydantic recurses
            raise InvalidParams(f"invalid params for {spec.name}: {type(e).__name__}: {str(e)[:200]}") from None

    async def call(self, service: str, method_name: str, params: Any) -> Any:
        """Call a method; returns the JSON-ready result.  Raises CloudisenseError subclasses."""
        spec = self.spec(service, method_name)
        p = self.validate(spec, params)
        svc = self._services[service]
        try:
            result = spec.func(svc, p) if spec.takes_params else spec.func(svc)
            if spec.is_async:
                result = await result
        except CloudisenseError:
            raise
        except Exception:
            log.exception("service %s.%s crashed", service, method_name)
            raise
        if result is None:
            return None
        if isinstance(result, BaseModel):
            return result.model_dump(mode="json")
        return result

    def describe(self) -> dict[str, Any]:
        if self._describe_cache is None:
            self._describe_cache = {
                name: {
                    "description": svc.description,
                    "methods": {m: spec.describe() for m, spec in self._methods[name].items()},
                }
                for name, svc in self._services.items()
            }
        return self._describe_cache

    def mutates(self, service: str, method_name: str) -> bool:
        return self.spec(service, method_name).mutates

    def mutates_or_none(self, service: str, method_name: str) -> bool | None:
        """Whether the method changes state, or None when there is no such method (no exception)."""
        return self._mutating.get((service, method_name))

