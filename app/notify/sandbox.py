"""A Jinja sandbox whose every render is bounded in time and memory, for templates that administrators edit.

Jinja's SandboxedEnvironment keeps a template away from Python's internals, but not from the machine: one
`{{ (((10**64)**64)**64)**64 }}` is a single big-integer operation that holds the GIL (and so every request of
the process, /healthz too) for seconds, and `{{ "x"|center(5*10**7) }}` allocates 50 MB at a stroke. Nothing
outside the render can interrupt a C call that holds the GIL (neither a timer thread nor a signal, which only
the main thread receives), so the bounds are inside it:

* no single operation is large: every value a template builds is checked before it is built where its size is
  known in advance (repetition, powers, widths of `center`/`ljust`/`zfill`/format specs/`indent`/`wordwrap`,
  `replace`, `join`, `range`) and after it is built otherwise: strings of at most MAX_TEXT characters, ints of
  at most MAX_INT_BITS bits, containers of at most MAX_ITEMS items and a tree of at most MAX_WEIGHT (counted
  through shared references, so `[l, l]` nested ten times is as big as it prints), text output of MAX_TEXT;
* the number of operations is counted: each operator, call, filter, test, attribute access, loop iteration
  and output is a step, and a render stops after MAX_STEPS (or TIME_LIMIT_SECONDS, whichever is first); the
  characters and items it produces in all are capped at MAX_PRODUCED, so a loop cannot fill a buffer either.

So a hostile template fails within a fraction of a second with a `RenderLimit`, and between two steps the
thread lets others run (plain Python code releases the GIL every few milliseconds). Lists and dicts are
immutable here (ImmutableSandboxedEnvironment) and namespaces print without their contents, so nothing can grow
after it was measured. The optimizer is off: nothing is evaluated at compile time, outside these bounds.
"""

from __future__ import annotations

import inspect
import re
import time
import types
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import wraps
from typing import Any, cast

from jinja2 import StrictUndefined, nodes, pass_context
from jinja2.compiler import CodeGenerator, Frame
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedEscapeFormatter, SandboxedFormatter
from jinja2.utils import Namespace
from markupsafe import Markup

MAX_TEXT = 100_000  # characters of any string a template builds, and of its output
MAX_INT_BITS = 256
MAX_ITEMS = 100_000  # items of a list, tuple or dict a template builds, or of one iteration
MAX_WEIGHT = 1_000_000  # the whole tree of a container: items, nested items and characters
MAX_RANGE = 10_000
MAX_WIDTH = 10_000  # a width, padding, count of batches or slices, format-spec number
MAX_INDENT = 16  # tojson's indent
MAX_PRECISION = 100  # round's precision
MAX_STEPS = 250_000
MAX_PRODUCED = 4_000_000  # characters and items produced by one render in all
TIME_LIMIT_SECONDS = 1.0

_CONTAINERS: tuple[type[Collection[Any]], ...] = (
    list,
    tuple,
    dict,
    set,
    frozenset,
    type({}.keys()),
    type({}.values()),
    type({}.items()),
)
_SCALARS = frozenset({int, float, bool, type(None)})
_PRINTF = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?([a-zA-Z%])")


class RenderLimit(Exception):
    """The template tried to do too much: one of the bounds above; the message says which."""


class _Budget:
    """What one render has spent; shared by every hook through a context variable."""

    def __init__(self) -> None:
        self.steps = 0
        self.produced = 0
        self.deadline = time.monotonic() + TIME_LIMIT_SECONDS
        self.weights: dict[int, tuple[Any, int]] = {}  # id -> (the container, kept alive so its id stays its own)

    def step(self, n: int = 1) -> None:
        self.steps += n
        if self.steps > MAX_STEPS:
            raise RenderLimit(f"more than {MAX_STEPS} steps")
        if time.monotonic() > self.deadline:
            raise RenderLimit(f"longer than {TIME_LIMIT_SECONDS:g} s")

    def produce(self, n: int) -> None:
        self.produced += n
        if self.produced > MAX_PRODUCED:
            raise RenderLimit(f"produces more than {MAX_PRODUCED} characters and items in all")

    def weigh(self, value: Any) -> int:
        """Size of the whole tree under `value` (each item 1, each string its length), memoised per container."""
        if isinstance(value, str | bytes):
            return 1 + len(value)
        if not isinstance(value, _CONTAINERS):
            return 1
        hit = self.weights.get(id(value))
        if hit is not None and hit[0] is value:
            return hit[1]
        self.step(1 + len(value) // 64)
        total = 1
        for item in (x for pair in value.items() for x in pair) if isinstance(value, dict) else value:
            kind = type(item)
            if kind in _SCALARS:
                total += 1
            elif kind is str:
                total += 1 + len(item)
            else:
                total += self.weigh(item)
                if total > MAX_WEIGHT:
                    break
        if total > MAX_WEIGHT:
            raise RenderLimit(f"builds a structure of more than {MAX_WEIGHT} items and characters")
        self.weights[id(value)] = (value, total)
        return total

    def check(self, value: Any) -> Any:
        """A value an operation produced: bounded, counted, and (an iterator) counted as it is consumed."""
        if value is None or isinstance(value, bool | float | complex):
            return value
        if isinstance(value, int):
            if value.bit_length() > MAX_INT_BITS:
                raise RenderLimit(f"computes an integer of more than {MAX_INT_BITS} bits")
            return value
        if isinstance(value, str):
            if len(value) > MAX_TEXT:
                raise RenderLimit(f"builds a string of more than {MAX_TEXT} characters")
            self.produce(len(value))
            return value
        if isinstance(value, bytes):
            if len(value) > 4 * MAX_TEXT:
                raise RenderLimit(f"builds bytes of more than {4 * MAX_TEXT}")
            self.produce(len(value))
            return value
        if isinstance(value, _CONTAINERS):
            if len(value) > MAX_ITEMS:
                raise RenderLimit(f"builds a collection of more than {MAX_ITEMS} items")
            self.produce(len(value))
            self.weigh(value)
            return value
        if isinstance(value, Iterator):
            return self.iterate(value)
        return value

    def iterate(self, iterable: Iterable[Any]) -> Iterator[Any]:
        for count, item in enumerate(iterable, 1):
            if count > MAX_ITEMS:
                raise RenderLimit(f"iterates over more than {MAX_ITEMS} items")
            self.step()
            yield item

    def text(self, value: Any) -> str:
        """`str(value)`, refused before it is built if it would be too long (a repr is at least the tree's weight)."""
        if isinstance(value, str):
            text = value
        else:
            if self.weigh(value) > MAX_TEXT:
                raise RenderLimit(f"prints a structure longer than {MAX_TEXT} characters")
            text = str(value)
        if len(text) > MAX_TEXT:
            raise RenderLimit(f"prints more than {MAX_TEXT} characters")
        self.produce(len(text))
        return text


_current: ContextVar[_Budget | None] = ContextVar("template_budget", default=None)


def _budget() -> _Budget:
    budget = _current.get()
    if budget is None:  # not inside bounded(): a compile-time evaluation, say, which the environment never does
        raise RenderLimit("evaluated outside a bounded render")
    return budget


@contextmanager
def bounded() -> Iterator[None]:
    """Every template evaluated inside shares one fresh budget."""
    token = _current.set(_Budget())
    try:
        yield
    finally:
        _current.reset(token)


# ---- checks before an operation whose result size is known in advance --------------------------------------


def _limit(value: Any, limit: int, what: str) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > limit:
        raise RenderLimit(f"{what} {value} exceeds {limit}")


def _estimate(size: int, what: str) -> None:
    if size > MAX_TEXT:
        raise RenderLimit(f"{what} would build more than {MAX_TEXT} characters")


def _check_printf(fmt: str | bytes, args: Any) -> None:
    text = fmt if isinstance(fmt, str) else fmt.decode("latin-1")
    for width, precision, _ in _PRINTF.findall(text):
        for number in (width, precision):
            if number == "*":
                raise RenderLimit("a `*` width in a % format")
            if number and int(number) > MAX_WIDTH:
                raise RenderLimit(f"a % format width {number} exceeds {MAX_WIDTH}")
    _budget().weigh(args)


def _check_replace(s: str | bytes, old: Any, new: Any, count: Any) -> None:
    if not isinstance(old, str | bytes) or not isinstance(new, str | bytes) or type(old) is not type(s):
        return  # Python refuses it itself
    found = s.count(old) if old else len(s) + 1  # type: ignore[arg-type]
    if isinstance(count, int) and count >= 0:
        found = min(found, count)
    _estimate(len(s) + found * max(0, len(new) - len(old)), "replace")


def _check_text_method(s: str | bytes, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Checks a str/bytes method call that can grow its string; returns the arguments to call it with."""
    first = args[0] if args else None
    if name in ("center", "ljust", "rjust", "zfill"):
        _limit(first if args else kwargs.get("width"), MAX_WIDTH, "a width")
    elif name == "expandtabs":
        tabsize = first if args else kwargs.get("tabsize", 8)
        _limit(tabsize, MAX_WIDTH, "a tab size")
        if isinstance(tabsize, int):
            tab = "\t" if isinstance(s, str) else b"\t"
            _estimate(len(s) + s.count(tab) * max(tabsize, 0), "expandtabs")  # type: ignore[arg-type]
    elif name == "replace" and len(args) >= 2:
        _check_replace(s, args[0], args[1], args[2] if len(args) > 2 else kwargs.get("count", -1))
    elif name == "join" and args:
        items = list(_budget().iterate(first)) if isinstance(first, Iterable) else first
        if isinstance(items, list):
            joined = sum(len(i) for i in items if isinstance(i, str | bytes))
            _estimate(joined + len(s) * max(len(items) - 1, 0), "join")
        return (items, *args[1:])
    elif name == "translate" and isinstance(first, dict):
        longest = max((len(v) for v in first.values() if isinstance(v, str | bytes)), default=1)
        _estimate(len(s) * max(longest, 1), "translate")
    return args


def _check_call(obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    owner = getattr(obj, "__self__", None)
    if not isinstance(obj, types.BuiltinMethodType):
        return args
    name = obj.__name__
    if isinstance(owner, str | bytes):
        return _check_text_method(owner, name, args, kwargs)
    if isinstance(owner, int) and name == "to_bytes":
        _limit(args[0] if args else kwargs.get("length", 1), MAX_WIDTH, "a length")
    return args


# Per filter: parameters that are sizes, and the bound of each.
_SIZE_PARAMETERS: dict[str, dict[str, int]] = {
    "center": {"width": MAX_WIDTH},
    "indent": {"width": MAX_WIDTH},
    "wordwrap": {"width": MAX_WIDTH},
    "truncate": {"length": MAX_TEXT, "leeway": MAX_WIDTH},
    "batch": {"linecount": MAX_WIDTH},
    "slice": {"slices": MAX_WIDTH},
    "tojson": {"indent": MAX_INDENT},
    "round": {"precision": MAX_PRECISION},
    "urlize": {"trim_url_limit": MAX_WIDTH},
}


def _lines(s: str) -> int:
    return s.count("\n") + 1


def _check_filter(name: str, arguments: dict[str, Any]) -> None:
    for parameter, bound in _SIZE_PARAMETERS.get(name, {}).items():
        _limit(arguments.get(parameter), bound, f"{name}'s {parameter}")
    value = arguments.get("value", arguments.get("s"))
    text = value if isinstance(value, str) else None
    if name == "indent" and text is not None:
        width = arguments.get("width", 4)
        pad = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
        _estimate(len(text) + _lines(text) * pad, "indent")
    elif name == "wordwrap" and text is not None:
        width = arguments.get("width", 79)
        wrap = arguments.get("wrapstring") or "\n"
        if isinstance(width, int) and isinstance(wrap, str):
            _estimate(len(text) + (len(text) // max(width, 1) + _lines(text)) * len(wrap), "wordwrap")
    elif name == "format" and isinstance(value, str):
        _check_printf(value, (arguments.get("args"), arguments.get("kwargs")))
    elif name == "replace" and text is not None:
        _check_replace(text, arguments.get("old"), arguments.get("new"), arguments.get("count"))
    elif name == "join":
        separator = arguments.get("d", "")
        if isinstance(separator, str) and isinstance(value, Collection):
            _estimate(len(separator) * max(len(value) - 1, 0), "join")
    elif name == "sum" and not isinstance(arguments.get("start", 0), int | float):
        raise RenderLimit("sum adds numbers only")
    elif name == "urlize" and text is not None:
        extra = sum(len(arguments.get(k) or "") for k in ("target", "rel") if isinstance(arguments.get(k), str))
        _estimate(3 * len(text) + (len(text.split()) + 1) * (extra + 64), "urlize")


def _bounded_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    signature = inspect.signature(func)
    passes_first = hasattr(func, "jinja_pass_arg")

    @wraps(func)
    def run(*args: Any, **kwargs: Any) -> Any:
        budget = _budget()
        budget.step()
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError:
            bound = None  # the filter itself will say what is wrong
        if bound is None:
            return budget.check(func(*args, **kwargs))
        value = bound.arguments.get("value")
        if name == "join" and isinstance(value, Iterable) and not isinstance(value, Collection):
            bound.arguments["value"] = list(budget.iterate(value))  # a generator: counted, to know its size
        arguments = dict(bound.arguments)
        if passes_first:
            arguments.pop(next(iter(signature.parameters)), None)
        _check_filter(name, arguments)
        return budget.check(func(*bound.args, **bound.kwargs))

    return run


def _counted_test(func: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(func)
    def run(*args: Any, **kwargs: Any) -> Any:
        _budget().step()
        return func(*args, **kwargs)

    return run


def _range(*args: int) -> range:
    _budget().step()
    rng = range(*args)
    if len(rng) > MAX_RANGE:
        raise RenderLimit(f"a range of more than {MAX_RANGE} items")
    return rng


class _Namespace(Namespace):
    """A namespace prints as itself, not its contents: it can change after a list that holds it was measured."""

    def __repr__(self) -> str:
        return "<Namespace>"


class _BoundedFormatter(SandboxedFormatter):
    def format_field(self, value: Any, format_spec: str) -> Any:
        for number in re.findall(r"\d+", format_spec):
            if int(number) > MAX_WIDTH:
                raise RenderLimit(f"a format spec number {number} exceeds {MAX_WIDTH}")
        if _budget().weigh(value) > MAX_TEXT:
            raise RenderLimit(f"formats a structure longer than {MAX_TEXT} characters")
        return super().format_field(value, format_spec)


class _BoundedEscapeFormatter(_BoundedFormatter, SandboxedEscapeFormatter):
    pass


class _Codegen(CodeGenerator):
    """Routes the constructs that have no sandbox hook through the environment: loops, `~`, literals."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._loop_iterables: set[int] = set()

    def visit(self, node: nodes.Node, *args: Any, **kwargs: Any) -> Any:
        if id(node) not in self._loop_iterables:
            return super().visit(node, *args, **kwargs)
        self._loop_iterables.discard(id(node))
        self.write("environment.bounded_iterate(")
        super().visit(node, *args, **kwargs)
        self.write(")")
        return None

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        self._loop_iterables.add(id(node.iter))
        super().visit_For(node, frame)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.bounded_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")

    def visit_List(self, node: nodes.List, frame: Frame) -> None:
        self.write("environment.bounded_literal(")
        super().visit_List(node, frame)
        self.write(")")

    def visit_Dict(self, node: nodes.Dict, frame: Frame) -> None:
        self.write("environment.bounded_literal(")
        super().visit_Dict(node, frame)
        self.write(")")

    def visit_Tuple(self, node: nodes.Tuple, frame: Frame) -> None:
        if node.ctx == "store":
            super().visit_Tuple(node, frame)
            return
        self.write("environment.bounded_literal(")
        super().visit_Tuple(node, frame)
        self.write(")")


@pass_context
def _finalize(context: Context, value: Any) -> str:
    budget = _budget()
    budget.step()
    return budget.text(value)


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox with the bounds of this module; render only inside `bounded()`."""

    code_generator_class = _Codegen
    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%", "**"})
    intercepted_unops = frozenset({"+", "-"})

    def __init__(self, **options: Any) -> None:
        super().__init__(undefined=StrictUndefined, optimized=False, finalize=_finalize, **options)
        self.filters = {name: _bounded_filter(name, f) for name, f in self.filters.items()}
        self.tests = {name: _counted_test(cast(Callable[..., Any], test)) for name, test in self.tests.items()}
        self.globals.pop("lipsum", None)  # generates paragraphs in bulk; no notification needs it
        self.globals["range"] = _range
        self.globals["namespace"] = _Namespace

    @staticmethod
    def concat(parts: Iterable[str]) -> str:
        """Joins a template's (or a block's) output, stopping as soon as it is too long."""
        collected: list[str] = []
        size = 0
        for part in parts:
            size += len(part)
            if size > MAX_TEXT:
                raise RenderLimit(f"renders more than {MAX_TEXT} characters")
            collected.append(part)
        return "".join(collected)

    def bounded_concat(self, parts: tuple[Any, ...]) -> str:
        budget = _budget()
        budget.step()
        texts = [budget.text(part) for part in parts]
        if sum(map(len, texts)) > MAX_TEXT:
            raise RenderLimit(f"`~` builds a string of more than {MAX_TEXT} characters")
        return "".join(texts)

    def bounded_iterate(self, iterable: Any) -> Iterator[Any]:
        return _budget().iterate(iterable)

    def bounded_literal(self, value: Any) -> Any:
        budget = _budget()
        budget.step()
        return budget.check(value)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        budget = _budget()
        budget.step()
        if operator == "**":
            powers = isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1
            if powers and (left.bit_length() - 1) * right > MAX_INT_BITS:
                raise RenderLimit(f"a power of more than {MAX_INT_BITS} bits")
        elif operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, str | bytes | list | tuple) and isinstance(n, int) and n > 0:
                    limit = MAX_TEXT if isinstance(seq, str | bytes) else MAX_ITEMS
                    if len(seq) * n > limit:
                        raise RenderLimit(f"a repetition of more than {limit}")
                    if not isinstance(seq, str | bytes) and budget.weigh(seq) * n > MAX_WEIGHT:
                        raise RenderLimit(f"a repetition of more than {MAX_WEIGHT} items and characters")
        elif operator == "+":
            if isinstance(left, str | bytes | list | tuple) and isinstance(right, str | bytes | list | tuple):
                limit = MAX_TEXT if isinstance(left, str | bytes) else MAX_ITEMS
                if len(left) + len(right) > limit:
                    raise RenderLimit(f"a concatenation of more than {limit}")
        elif operator == "%" and isinstance(left, str | bytes):
            _check_printf(left, right)
        return budget.check(self.binop_table[operator](left, right))

    def call_unop(self, context: Context, operator: str, arg: Any) -> Any:
        budget = _budget()
        budget.step()
        return budget.check(self.unop_table[operator](arg))

    def getattr(self, obj: Any, attribute: str) -> Any:
        _budget().step()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        budget = _budget()
        budget.step()
        value = super().getitem(obj, argument)
        return budget.check(value) if isinstance(argument, slice) else value

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        budget = _budget()
        budget.step()
        args = _check_call(__obj, args, kwargs)
        return budget.check(super().call(__context, __obj, *args, **kwargs))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """The sandbox's own str.format wrapper, with a formatter that bounds widths and precisions."""
        if not isinstance(value, types.MethodType | types.BuiltinMethodType) or value.__name__ not in (
            "format",
            "format_map",
        ):
            return None
        f_self: Any = value.__self__
        if not isinstance(f_self, str):
            return None
        str_type: type[str] = type(f_self)
        is_format_map = value.__name__ == "format_map"
        formatter: SandboxedFormatter
        if isinstance(f_self, Markup):
            formatter = _BoundedEscapeFormatter(self, escape=f_self.escape)
        else:
            formatter = _BoundedFormatter(self)

        def wrapper(*args: Any, **kwargs: Any) -> str:
            if is_format_map:
                if kwargs:
                    raise TypeError("format_map() takes no keyword arguments")
                if len(args) != 1:
                    raise TypeError(f"format_map() takes exactly one argument ({len(args)} given)")
                kwargs = args[0]
                args = ()
            return str_type(formatter.vformat(f_self, args, kwargs))

        return wraps(value)(wrapper)
