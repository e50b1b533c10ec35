"""Tools: plain Python functions the model can call.

``@tool`` turns a type-hinted function with a Google-style docstring into a :class:`Tool`. Every
check runs when the decorator is applied, so a broken tool fails at import time and not in the
middle of a chat. :meth:`Tool.run` never raises for a failure the model can act on (bad JSON,
invalid arguments, an exception in the tool): it returns ``ToolResult(is_error=True,
content="Error: ...")`` instead. ``KeyboardInterrupt`` and ``asyncio.CancelledError`` always
propagate.

Example:
    >>> @tool
    ... def add(a: int, b: int = 1) -> int:
    ...     '''Add two integers.
    ...
    ...     Args:
    ...         a: The first number.
    ...         b: The second number.
    ...     '''
    ...     return a + b
    >>> add.schema()["function"]["parameters"]["required"]
    ['a']
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import typing
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, overload

from .errors import ToolDefinitionError, ToolError, UsageError

if TYPE_CHECKING:
    import pydantic

# pydantic is imported where it is used, on the first tool made: it costs ~50 ms at start-up.

__all__ = ["Tool", "ToolRegistry", "ToolResult", "parse_docstring", "tool"]

NAME_PATTERN = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
"""Tool names accepted by OpenAI, Anthropic and most other providers."""

_SECTION = re.compile(
    r"^(Args|Arguments|Parameters|Params|Keyword Args|Keyword Arguments|Returns|Return|Yields|"
    r"Yield|Raises|Raise|Examples?|Notes?|Attributes|Todo|Warnings?|See Also|References)\s*:\s*$",
    re.IGNORECASE,
)
_ARG_SECTIONS = {"args", "arguments", "parameters", "params", "keyword args", "keyword arguments"}
_ARG_LINE = re.compile(
    r"^\*{0,2}(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*(\([^)]*\))?\s*:\s*(?P<desc>.*)$"
)


@dataclass
class ToolResult:
    """What a tool call produced, ready to be sent back to the model."""

    content: str
    """The text the model sees (``"Error: ..."`` when ``is_error``)."""
    is_error: bool = False
    """True when the call failed; the model is expected to retry or give up."""
    exception: BaseException | None = None
    """The exception behind an error, kept for logs; never sent to the model."""


# --- docstrings -----------------------------------------------------------------------------


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """Split a Google-style docstring into a description and per-parameter descriptions.

    Args:
        doc: The raw docstring (``fn.__doc__``), or None.

    Returns:
        ``(description, {parameter: description})``. The description is the text before the
        first section header (``Args:``, ``Returns:`` ...), with paragraphs kept.
    """
    if not doc:
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    description: list[str] = []
    params: dict[str, str] = {}
    section: str | None = None
    current: str | None = None
    indent: int | None = None
    for line in lines:
        stripped = line.strip()
        header = _SECTION.match(stripped) if not line.startswith((" ", "\t")) else None
        if header:
            section = header.group(1).lower()
            current, indent = None, None
            continue
        if section is None:
            description.append(line)
            continue
        if section not in _ARG_SECTIONS or not stripped:
            continue
        line_indent = len(line) - len(line.lstrip())
        match = _ARG_LINE.match(stripped)
        if match and (indent is None or line_indent <= indent):
            indent = line_indent
            current = match.group("name")
            params[current] = match.group("desc").strip()
        elif current is not None:
            params[current] = f"{params[current]} {stripped}".strip()
    return "\n".join(description).strip(), params


# --- schema -----------------------------------------------------------------------------------


def _strip_titles(node: Any) -> Any:
    """Drop pydantic's generated ``title`` keys, which only add tokens to every request."""
    if isinstance(node, list):
        return [_strip_titles(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "title" and isinstance(value, str):
            continue
        if key in ("properties", "$defs", "definitions", "patternProperties") and isinstance(
            value, dict
        ):
            out[key] = {name: _strip_titles(sub) for name, sub in value.items()}
        else:
            out[key] = _strip_titles(value)
    return out


def _build_model(
    fn: Callable[..., Any], tool_name: str, param_docs: dict[str, str]
) -> tuple[type[pydantic.BaseModel], dict[str, Any]]:
    """Check ``fn``'s signature and build the pydantic model that validates its arguments."""
    import pydantic

    where = f"tool {tool_name!r} ({getattr(fn, '__qualname__', fn)!r})"
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise ToolDefinitionError(f"{where}: cannot read the signature: {exc}") from exc
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception as exc:  # NameError for a type defined inside a function, etc.
        raise ToolDefinitionError(
            f"{where}: cannot resolve the type hints ({exc}); define the types used in the "
            f"signature at module level"
        ) from exc

    # Fields get neutral names and the parameter name as alias, so parameters may be called
    # ``json``, ``schema`` or ``_private`` without clashing with BaseModel's own attributes.
    fields: dict[str, Any] = {}
    for index, param in enumerate(signature.parameters.values()):
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            star = "*" if param.kind is param.VAR_POSITIONAL else "**"
            raise ToolDefinitionError(
                f"{where}: {star}{param.name} is not allowed; list every argument as a named, "
                f"type-hinted parameter"
            )
        if param.kind is param.POSITIONAL_ONLY:
            raise ToolDefinitionError(
                f"{where}: parameter {param.name!r} is positional-only; remove the '/' so it can "
                f"be passed by name"
            )
        if param.name not in hints:
            raise ToolDefinitionError(
                f"{where}: parameter {param.name!r} has no type hint; add one, e.g. "
                f"'{param.name}: str'"
            )
        default = ... if param.default is param.empty else param.default
        info = pydantic.Field(default, alias=param.name, description=param_docs.get(param.name))
        fields[f"p{index}"] = (hints[param.name], info)

    unknown = sorted(set(param_docs) - set(signature.parameters))
    if unknown:
        raise ToolDefinitionError(
            f"{where}: the docstring documents {', '.join(map(repr, unknown))} but the function "
            f"has no such parameter; fix the 'Args:' section"
        )

    try:
        model = pydantic.create_model(  # type: ignore[call-overload]
            f"{tool_name}_arguments",
            __config__=pydantic.ConfigDict(extra="forbid", arbitrary_types_allowed=False),
            **fields,
        )
        schema = _strip_titles(model.model_json_schema())
    except Exception as exc:
        raise ToolDefinitionError(
            f"{where}: cannot build a JSON schema for the parameters ({exc}); use JSON-friendly "
            f"types (str, int, float, bool, list, dict, Literal, Enum, pydantic models)"
        ) from exc
    schema.setdefault("properties", {})
    schema.setdefault("required", [])
    return model, schema


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ToolDefinitionError(
            f"invalid tool name {name!r}: use 1-64 letters, digits, '_' or '-' "
            f"(pass name=... to @tool)"
        )


# --- Tool -------------------------------------------------------------------------------------


def _format_validation_error(exc: pydantic.ValidationError) -> str:
    problems = []
    for err in exc.errors():
        loc = ".".join(str(part) for part in err["loc"]) or "(arguments)"
        problems.append(f"{loc}: {err['msg']}")
    return "invalid arguments: " + "; ".join(problems)


def _json_default(value: Any) -> Any:
    """Encode what ``json`` cannot (enums, dates, models, dataclasses); ``repr`` as last resort."""
    import pydantic_core

    try:
        return pydantic_core.to_jsonable_python(value)
    except Exception:
        return repr(value)


def _to_text(result: Any) -> str:
    if isinstance(result, str):
        return result
    return json.dumps(result, default=_json_default, ensure_ascii=False)


@dataclass(frozen=True, eq=False)
class Tool:
    """A function the model can call.

    Build one with ``@tool`` or :meth:`Tool.from_function`. Constructing ``Tool(...)`` directly
    is for tools whose schema is known already (MCP): without ``args_model`` the arguments are
    only checked to be a JSON object and passed to ``fn`` as keyword arguments.
    """

    name: str
    """The name the model calls the tool by (``^[a-zA-Z0-9_-]{1,64}$``)."""
    description: str
    """What the tool does, for the model."""
    parameters: dict[str, Any]
    """JSON schema of the arguments object."""
    fn: Callable[..., Any]
    """The function that runs; coroutine functions are awaited, others run in a thread."""
    needs_approval: bool = False
    """True when a human should approve each call (writes, commands)."""
    raise_errors: bool = False
    """Re-raise exceptions from ``fn`` (other than ``ToolError``) instead of reporting them."""
    timeout: float | None = None
    """Seconds a call may take; a sync function keeps running in its thread after a timeout."""
    args_model: type[pydantic.BaseModel] | None = field(default=None, repr=False)
    """Validates the arguments before the call; None passes the JSON object through."""
    is_async: bool = field(init=False, repr=False)
    """Whether ``fn`` is a coroutine function."""

    def __post_init__(self) -> None:
        _check_name(self.name)
        if not callable(self.fn):
            raise ToolDefinitionError(f"tool {self.name!r}: fn must be callable, got {self.fn!r}")
        if self.timeout is not None and self.timeout <= 0:
            raise ToolDefinitionError(f"tool {self.name!r}: timeout must be > 0 seconds or None")
        # An object with ``async def __call__`` counts as async too.
        is_async = inspect.iscoroutinefunction(self.fn) or inspect.iscoroutinefunction(
            type(self.fn).__call__
        )
        object.__setattr__(self, "is_async", is_async)

    @classmethod
    def from_function(
        cls,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        needs_approval: bool = False,
        raise_errors: bool = False,
        timeout: float | None = None,
    ) -> Tool:
        """Make a tool from a type-hinted function with a Google-style docstring.

        Args:
            fn: A sync or async function; every parameter needs a type hint.
            name: The tool name; defaults to ``fn.__name__``.
            description: Overrides the docstring's description (then no docstring is needed).
            needs_approval: Whether each call should be approved by a human.
            raise_errors: Re-raise exceptions from ``fn`` instead of reporting them to the model.
            timeout: Seconds a call may take before it fails.

        Returns:
            The tool.

        Raises:
            ToolDefinitionError: The function cannot be a tool; the message says what to fix.
        """
        if isinstance(fn, Tool):
            return fn
        if not callable(fn):
            raise ToolDefinitionError(f"@tool needs a function, got {fn!r}")
        tool_name = name if name is not None else getattr(fn, "__name__", "")
        _check_name(tool_name)
        doc_description, param_docs = parse_docstring(inspect.getdoc(fn))
        final_description = description if description is not None else doc_description
        if not final_description or not final_description.strip():
            raise ToolDefinitionError(
                f"tool {tool_name!r}: no description; add a docstring saying what the tool does "
                f"(or pass description=...)"
            )
        model, schema = _build_model(fn, tool_name, param_docs)
        return cls(
            name=tool_name,
            description=final_description.strip(),
            parameters=schema,
            fn=fn,
            needs_approval=needs_approval,
            raise_errors=raise_errors,
            timeout=timeout,
            args_model=model,
        )

    def schema(self) -> dict[str, Any]:
        """Return the OpenAI function-tool schema of this tool."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the underlying function directly (no validation, no error handling)."""
        return self.fn(*args, **kwargs)

    def _parse_arguments(self, arguments: str | dict[str, Any] | None) -> dict[str, Any]:
        if arguments is None or (isinstance(arguments, str) and not arguments.strip()):
            arguments = {}
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except json.JSONDecodeError as exc:
                raise ToolError(
                    f"the arguments are not valid JSON ({exc}); send a JSON object such as "
                    f'{{"name": "value"}}'
                ) from exc
        if not isinstance(arguments, dict):
            raise ToolError(
                f"the arguments must be a JSON object, got {type(arguments).__name__}; send "
                f'{{"name": "value"}}'
            )
        if self.args_model is None:
            return arguments
        import pydantic

        try:
            validated = self.args_model.model_validate(arguments)
        except pydantic.ValidationError as exc:
            raise ToolError(_format_validation_error(exc)) from exc
        # Keep nested models and enums as validated objects, not dumped back to dicts.
        return {
            info.alias or key: getattr(validated, key)
            for key, info in type(validated).model_fields.items()
        }

    async def _call(self, kwargs: dict[str, Any]) -> Any:
        if self.is_async:
            return await self.fn(**kwargs)
        result = await asyncio.to_thread(self.fn, **kwargs)
        if inspect.isawaitable(result):  # a sync wrapper around a coroutine
            result = await result
        return result

    async def run(self, arguments: str | dict[str, Any] | None = None) -> ToolResult:
        """Validate the arguments, call the function and turn the outcome into a result.

        Args:
            arguments: The JSON-encoded arguments object from the model, or a dict.

        Returns:
            The result; ``is_error`` is True for bad JSON, invalid arguments, a timeout, a
            ``ToolError`` or any other ``Exception`` raised by the tool.

        Raises:
            Exception: Only with ``raise_errors=True``, the exception raised by the function.
        """
        try:
            kwargs = self._parse_arguments(arguments)
        except ToolError as exc:
            return ToolResult(f"Error: {exc}", is_error=True, exception=exc)
        try:
            if self.timeout is None:
                result = await self._call(kwargs)
            else:
                try:
                    result = await asyncio.wait_for(self._call(kwargs), self.timeout)
                except TimeoutError as exc:
                    raise TimeoutError(
                        f"tool {self.name!r} timed out after {self.timeout:g} s"
                    ) from exc
        except ToolError as exc:
            return ToolResult(f"Error: {exc}", is_error=True, exception=exc)
        except Exception as exc:
            if self.raise_errors:
                raise
            message = str(exc) or type(exc).__name__
            if not isinstance(exc, TimeoutError):
                message = f"{type(exc).__name__}: {message}"
            return ToolResult(f"Error: {message}", is_error=True, exception=exc)
        if isinstance(result, ToolResult):
            return result
        try:
            return ToolResult(_to_text(result))
        except Exception as exc:  # e.g. a circular structure
            if self.raise_errors:
                raise
            return ToolResult(
                f"Error: the tool's result could not be encoded as JSON: {exc}",
                is_error=True,
                exception=exc,
            )


# --- @tool ------------------------------------------------------------------------------------


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    needs_approval: bool = False,
    raise_errors: bool = False,
    timeout: float | None = None,
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    needs_approval: bool = False,
    raise_errors: bool = False,
    timeout: float | None = None,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Turn a function into a :class:`Tool`; usable as ``@tool`` or ``@tool(name=...)``.

    Args:
        fn: The function, when used bare.
        name: The tool name; defaults to the function's name.
        description: Overrides the docstring's description.
        needs_approval: Whether each call should be approved by a human.
        raise_errors: Re-raise exceptions from the function instead of reporting them.
        timeout: Seconds a call may take before it fails.

    Returns:
        The tool, or a decorator that makes one.

    Raises:
        ToolDefinitionError: The function cannot be a tool; the message says what to fix.
    """

    def decorate(func: Callable[..., Any]) -> Tool:
        return Tool.from_function(
            func,
            name=name,
            description=description,
            needs_approval=needs_approval,
            raise_errors=raise_errors,
            timeout=timeout,
        )

    if fn is None:
        return decorate
    if isinstance(fn, str):
        raise ToolDefinitionError(f"use @tool(name={fn!r}), not @tool({fn!r})")
    return decorate(fn)


# --- registry ---------------------------------------------------------------------------------


class ToolRegistry:
    """The tools an agent may call, by name.

    Example:
        >>> registry = ToolRegistry([add])  # doctest: +SKIP
        >>> await registry.run("add", '{"a": 1}')  # doctest: +SKIP
    """

    def __init__(self, tools: Iterable[Tool | Callable[..., Any]] = ()) -> None:
        """Create a registry.

        Args:
            tools: Tools or plain functions to add.
        """
        self._tools: dict[str, Tool] = {}
        for item in tools:
            self.add(item)

    def add(self, item: Tool | Callable[..., Any]) -> Tool:
        """Add a tool, a plain function (converted with ``Tool.from_function``) or an MCP tool.

        Args:
            item: A ``Tool`` (including those from ``MCPManager.tools()``) or a function.

        Returns:
            The tool that was added.

        Raises:
            UsageError: A tool with the same name is registered already.
            ToolDefinitionError: A function cannot be made into a tool.
        """
        if isinstance(item, Tool):
            new = item
        elif type(item).__module__.startswith(("mcp.", "mcp_types")):
            raise UsageError(
                f"cannot add the raw MCP object {type(item).__name__}; add the tools returned by "
                f"scratchy.mcp.MCPManager.tools() instead"
            )
        elif callable(item):
            new = Tool.from_function(item)
        else:
            raise UsageError(f"cannot add {item!r} as a tool: pass a Tool or a function")
        if new.name in self._tools:
            raise UsageError(
                f"a tool named {new.name!r} is registered already; give one of them another "
                f"name with @tool(name=...) or remove the old one first"
            )
        self._tools[new.name] = new
        return new

    def extend(self, items: Iterable[Tool | Callable[..., Any]]) -> None:
        """Add several tools (see :meth:`add`)."""
        for item in items:
            self.add(item)

    def get(self, name: str) -> Tool | None:
        """Return the tool called ``name``, or None."""
        return self._tools.get(name)

    def remove(self, name: str) -> Tool:
        """Remove and return the tool called ``name``.

        Raises:
            KeyError: No tool has that name.
        """
        try:
            return self._tools.pop(name)
        except KeyError:
            registered = ", ".join(self._tools) or "none"
            raise KeyError(f"no tool named {name!r}; registered: {registered}") from None

    def names(self) -> list[str]:
        """Names of the registered tools, in the order they were added."""
        return list(self._tools)

    def schemas(self) -> list[dict[str, Any]]:
        """The OpenAI function-tool schemas of all tools, to send with a request."""
        return [t.schema() for t in self._tools.values()]

    async def run(self, name: str, arguments: str | dict[str, Any] | None = None) -> ToolResult:
        """Run the tool called ``name``; an unknown name gives an error result.

        Args:
            name: The tool name from the model's tool call.
            arguments: The JSON-encoded arguments from the model's tool call.

        Returns:
            The tool's result.
        """
        found = self._tools.get(name)
        if found is None:
            available = ", ".join(self._tools) or "none"
            return ToolResult(
                f'Error: tool "{name}" does not exist; available tools: {available}',
                is_error=True,
            )
        return await found.run(arguments)

    def __contains__(self, item: object) -> bool:
        """``"name" in registry`` or ``tool in registry``."""
        if isinstance(item, Tool):
            return self._tools.get(item.name) is item
        return item in self._tools

    def __iter__(self) -> Iterator[Tool]:
        """Iterate over the tools, in the order they were added."""
        return iter(list(self._tools.values()))

    def __len__(self) -> int:
        return len(self._tools)

    def __repr__(self) -> str:
        return f"ToolRegistry({self.names()!r})"
