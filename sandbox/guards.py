"""The restricted namespace: allow-listed builtins, attribute/item/write guards, guarded imports.

Everything here runs inside the worker process. RestrictedPython rewrites attribute access,
subscripts, iteration, unpacking, in-place operators and writes into calls to the ``_name_``
functions built here; names starting with ``_`` are refused at compile time, so code cannot
reach or rebind them.
"""

from __future__ import annotations

import builtins
import importlib
import operator
import types
from collections.abc import Callable
from typing import Any

from RestrictedPython.Guards import guarded_iter_unpack_sequence, guarded_unpack_sequence
from RestrictedPython.transformer import INSPECT_ATTRIBUTES

from sandbox.policy import DENIED_MODULE_NAMES


class PolicyViolation(Exception):
    """Code asked for something the sandbox policy refuses (a module, name or attribute)."""


class OutputLimit(BaseException):
    """Printed output passed the cap; a BaseException so ``except Exception`` does not hide it."""


_SAFE_BUILTINS = (
    "None",
    "False",
    "True",
    "Ellipsis",
    "NotImplemented",
    "abs",
    "all",
    "any",
    "ascii",
    "bin",
    "bool",
    "bytearray",
    "bytes",
    "callable",
    "chr",
    "classmethod",
    "complex",
    "dict",
    "divmod",
    "enumerate",
    "filter",
    "float",
    "format",
    "frozenset",
    "hash",
    "hex",
    "id",
    "int",
    "isinstance",
    "issubclass",
    "iter",
    "len",
    "list",
    "map",
    "max",
    "min",
    "next",
    "object",
    "oct",
    "ord",
    "pow",
    "property",
    "range",
    "repr",
    "reversed",
    "round",
    "set",
    "slice",
    "sorted",
    "staticmethod",
    "str",
    "sum",
    "tuple",
    "zip",
)

# Builtins left out on purpose; calling one says so instead of a bare NameError.
_REFUSED_BUILTINS = (
    "breakpoint",
    "compile",
    "delattr",
    "dir",
    "eval",
    "exec",
    "exit",
    "globals",
    "help",
    "input",
    "locals",
    "memoryview",
    "open",
    "quit",
    "setattr",
    "super",
    "vars",
)

_SAFE_EXCEPTIONS = tuple(
    name
    for name, value in vars(builtins).items()
    if isinstance(value, type) and issubclass(value, BaseException) and not name.startswith("_")
)

# Attributes that lead to frames, code, globals or C-level attribute readers, whatever the object.
_DENIED_ATTRS = INSPECT_ATTRIBUTES | {
    "f_locals",
    "f_globals",
    "f_builtins",
    "f_back",
    "f_code",
    "tb_frame",
    "tb_next",
    "gi_frame",
    "gi_code",
    "cr_frame",
    "cr_code",
    "ag_frame",
    "ag_code",
    "format",
    "format_map",
    "mro",
}
_OPAQUE_TYPES = (types.FrameType, types.TracebackType, types.CodeType)

_INPLACE_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "+=": operator.iadd,
    "-=": operator.isub,
    "*=": operator.imul,
    "/=": operator.itruediv,
    "//=": operator.ifloordiv,
    "%=": operator.imod,
    "**=": operator.ipow,
    "<<=": operator.ilshift,
    ">>=": operator.irshift,
    "&=": operator.iand,
    "^=": operator.ixor,
    "|=": operator.ior,
    "@=": operator.imatmul,
}


def guarded_getattr(obj: Any, name: str, *default: Any) -> Any:
    """``getattr`` for sandboxed code: no private names, frames, formatters or modules."""
    if type(name) is not str:  # a str subclass could answer startswith/__eq__ as it likes
        raise TypeError(f"attribute name must be a str, not {type(name).__name__}")
    if name.startswith("_"):
        raise PolicyViolation(f"attribute '{name}' is not allowed (names starting with '_' are private)")
    if name in _DENIED_ATTRS or isinstance(obj, _OPAQUE_TYPES):
        raise PolicyViolation(f"attribute '{name}' is not allowed in the sandbox")
    if name == "obj" and isinstance(obj, BaseException):
        raise PolicyViolation("attribute 'obj' of exceptions is not allowed in the sandbox")
    value = getattr(obj, name, *default)
    if isinstance(value, types.ModuleType):
        raise PolicyViolation(f"attribute '{name}' is a module; modules are reached only by import")
    return value


def guarded_hasattr(obj: Any, name: str) -> bool:
    """``hasattr`` with the same refusals as ``guarded_getattr``."""
    try:
        guarded_getattr(obj, name)
    except AttributeError:
        return False
    return True


def guarded_getitem(obj: Any, index: Any) -> Any:
    return obj[index]


def guarded_getiter(obj: Any) -> Any:
    return iter(obj)


def guarded_inplacevar(op: str, target: Any, value: Any) -> Any:
    try:
        return _INPLACE_OPS[op](target, value)
    except KeyError:
        raise PolicyViolation(f"in-place operator {op!r} is not allowed") from None


def guarded_apply(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return func(*args, **kwargs)


def refused_builtin(name: str) -> Callable[..., Any]:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise PolicyViolation(f"builtin '{name}' is not allowed in the sandbox")

    return refuse


def safe_type(obj: Any, *rest: Any) -> type:
    """One-argument ``type`` that never hands out ``type`` or another metaclass.

    Calling a metaclass with three arguments builds a class outside ``__metaclass__`` and the
    guards, so ``type(type(0))`` and ``type(re.RegexFlag)`` are refused like ``type(a, b, c)``.
    """
    if rest:
        raise PolicyViolation("type() with three arguments is not allowed; use a class statement")
    kind = type(obj)
    if issubclass(kind, type):
        raise PolicyViolation("type() of a class is not allowed in the sandbox (it would be a metaclass)")
    return kind


class ModuleProxy:
    """Base of the read-only stand-ins that ``import`` hands to sandboxed code."""

    __slots__ = ()


def module_proxy(name: str, names: dict[str, Any], withheld: frozenset[str] = frozenset()) -> ModuleProxy:
    """A read-only object exposing only ``names``, standing in for module ``name``.

    ``withheld`` names exist in the module but are refused; asking for one is a policy error.
    """

    def getattribute(self: Any, attr: str) -> Any:
        try:
            return names[attr]
        except KeyError:
            if attr in withheld:
                raise PolicyViolation(f"name '{attr}' of module '{name}' is not allowed in the sandbox") from None
            raise AttributeError(f"module '{name}' has no attribute '{attr}'") from None

    def refuse(self: Any, attr: str, *value: Any) -> None:
        raise PolicyViolation(f"module '{name}' is read-only in the sandbox")

    namespace = {
        "__slots__": (),
        "__getattribute__": getattribute,
        "__setattr__": refuse,
        "__delattr__": refuse,
        "__repr__": lambda self: f"<module '{name}' (sandboxed)>",
        "__dir__": lambda self: sorted(names),
    }
    return type("module", (ModuleProxy,), namespace)()


def vetted_names(module: types.ModuleType) -> dict[str, Any]:
    """A module's public names, without module values and without the denied helpers."""
    denied = DENIED_MODULE_NAMES.get(module.__name__, frozenset())
    public = getattr(module, "__all__", None) or [n for n in vars(module) if not n.startswith("_")]
    names = {}
    for attr in public:
        if attr.startswith("_") or attr in denied or not hasattr(module, attr):
            continue
        value = getattr(module, attr)
        if not isinstance(value, types.ModuleType):
            names[attr] = value
    return names


def load_proxies(modules: frozenset[str]) -> dict[str, ModuleProxy]:
    """Import every allowed module once (trusted code) and wrap it in a proxy."""
    proxies = {}
    for name in sorted(modules):
        module = importlib.import_module(name)
        names = vetted_names(module)
        withheld = frozenset(n for n in dir(module) if not n.startswith("_") and n not in names)
        proxies[name] = module_proxy(name, names, withheld)
    return proxies


def make_import(proxies: dict[str, ModuleProxy]) -> Callable[..., ModuleProxy]:
    """The ``__import__`` sandboxed code sees: allowed top-level modules, vetted names only."""
    allowed = ", ".join(sorted(proxies))

    def guarded_import(
        name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0
    ) -> ModuleProxy:
        if type(name) is not str or type(level) is not int or level != 0 or name not in proxies:
            raise PolicyViolation(f"import of module '{name}' is not allowed (allowed: {allowed})")
        proxy = proxies[name]
        for attr in fromlist or ():
            if type(attr) is not str or not guarded_hasattr(proxy, attr):
                raise PolicyViolation(f"name '{attr}' of module '{name}' is not allowed in the sandbox")
        return proxy

    return guarded_import


class Printed:
    """The one print target every scope of a run shares, cut at ``cap`` characters."""

    def __init__(self, cap: int) -> None:
        self.parts: list[str] = []
        self.size = 0
        self.cap = cap
        self.overflow = False

    def write(self, text: str) -> None:
        if self.overflow:
            raise OutputLimit(f"output passed the limit of {self.cap} characters")
        room = self.cap - self.size
        if len(text) > room:
            self.parts.append(text[:room])
            self.size = self.cap
            self.overflow = True
            raise OutputLimit(f"output passed the limit of {self.cap} characters")
        self.parts.append(text)
        self.size += len(text)

    def flush(self) -> None:
        pass

    def __call__(self) -> str:
        return "".join(self.parts)

    def _call_print(self, *objects: Any, **kwargs: Any) -> None:
        if kwargs.get("file") is None:
            kwargs["file"] = self
        else:
            guarded_getattr(kwargs["file"], "write")
        print(*objects, **kwargs)


class WriteGuard:
    """``_write_``: items may be set on any container; attributes only on classes the code made."""

    def __init__(self) -> None:
        # Keyed by identity: a set lookup would call a code-made object's own __eq__.
        self.classes: dict[int, type] = {}

    def __call__(self, obj: Any) -> Any:
        if isinstance(obj, ModuleProxy):
            raise PolicyViolation(f"{obj!r} is read-only")
        if type(obj) in (dict, list) or id(type(obj)) in self.classes or id(obj) in self.classes:
            return obj
        return _GuardedTarget(obj)

    def metaclass(self, name: str, bases: tuple[type, ...], namespace: dict[str, Any]) -> type:
        """RestrictedPython compiles every ``class`` statement with ``metaclass=__metaclass__``."""
        cls = type(name, bases, namespace)
        self.classes[id(cls)] = cls
        return cls


class _GuardedTarget:
    """Stands in for an object on the left of an assignment: item writes pass, attribute writes don't."""

    __slots__ = ("target",)
    target: Any

    def __init__(self, target: Any) -> None:
        object.__setattr__(self, "target", target)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.target[key] = value

    def __delitem__(self, key: Any) -> None:
        del self.target[key]

    def __setattr__(self, attr: str, value: Any) -> None:
        raise PolicyViolation(f"cannot set attribute '{attr}' on {type(self.target).__name__} objects in the sandbox")

    def __delattr__(self, attr: str) -> None:
        raise PolicyViolation(
            f"cannot delete attribute '{attr}' on {type(self.target).__name__} objects in the sandbox"
        )


def make_globals(proxies: dict[str, ModuleProxy], printed: Printed) -> dict[str, Any]:
    """A fresh global namespace for one run."""
    writes = WriteGuard()
    safe = {name: refused_builtin(name) for name in _REFUSED_BUILTINS}
    safe.update((name, getattr(builtins, name)) for name in _SAFE_BUILTINS + _SAFE_EXCEPTIONS)
    safe.update(
        __build_class__=builtins.__build_class__,
        __import__=make_import(proxies),
        getattr=guarded_getattr,
        hasattr=guarded_hasattr,
        type=safe_type,
    )
    return {
        "__builtins__": safe,
        "__name__": "__sandbox__",
        "__metaclass__": writes.metaclass,
        "_getattr_": guarded_getattr,
        "_getitem_": guarded_getitem,
        "_getiter_": guarded_getiter,
        "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
        "_unpack_sequence_": guarded_unpack_sequence,
        "_inplacevar_": guarded_inplacevar,
        "_apply_": guarded_apply,
        "_write_": writes,
        "_print_": lambda _getattr_=None: printed,
        "_print": printed,
    }
