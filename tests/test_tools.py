"""Tests for scratchy.tools: @tool, Tool.run and ToolRegistry."""

from __future__ import annotations

import asyncio
import enum
import json
import threading
import time
from typing import Literal

import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scratchy.errors import ToolDefinitionError, ToolError, UsageError
from scratchy.tools import Tool, ToolRegistry, ToolResult, parse_docstring, tool


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Point(pydantic.BaseModel):
    x: int
    y: int


@tool
def search(
    query: str,
    limit: int = 10,
    tags: list[str] | None = None,
    weights: dict[str, float] | None = None,
    mode: Literal["fast", "exact"] = "fast",
    color: Color = Color.RED,
) -> dict[str, object]:
    """Search the notes.

    Only titles are searched.

    Args:
        query: The words to look for.
        limit: The most results to
            return, over two lines.
        tags (list[str]): Only notes with these tags.
        mode: How to match.

    Returns:
        The matching notes.

    Raises:
        ValueError: Never.
    """
    return {"query": query, "limit": limit, "tags": tags, "mode": mode, "color": color}


# --- schema -----------------------------------------------------------------------------------


def test_bare_decorator_builds_tool_with_description_and_parameter_docs() -> None:
    assert isinstance(search, Tool)
    assert search.name == "search"
    assert search.description == "Search the notes.\n\nOnly titles are searched."
    props = search.parameters["properties"]
    assert props["query"] == {"type": "string", "description": "The words to look for."}
    assert props["limit"]["description"] == "The most results to return, over two lines."
    assert props["tags"]["description"] == "Only notes with these tags."
    assert "description" not in props["weights"]
    assert search.parameters["required"] == ["query"]
    assert search.parameters["type"] == "object"
    assert search.parameters["additionalProperties"] is False


def test_schema_types_optional_defaults_literal_enum() -> None:
    props = search.parameters["properties"]
    assert props["limit"] == {
        "type": "integer",
        "default": 10,
        "description": "The most results to return, over two lines.",
    }
    assert props["tags"]["anyOf"] == [
        {"type": "array", "items": {"type": "string"}},
        {"type": "null"},
    ]
    assert props["tags"]["default"] is None
    assert props["weights"]["anyOf"][0] == {
        "type": "object",
        "additionalProperties": {"type": "number"},
    }
    assert props["mode"]["enum"] == ["fast", "exact"]
    assert props["mode"]["default"] == "fast"
    ref = props["color"]["$ref"].split("/")[-1]
    assert search.parameters["$defs"][ref]["enum"] == ["red", "green"]
    assert "title" not in json.dumps(search.parameters)  # pydantic's titles are stripped


def test_schema_is_openai_function_shape() -> None:
    schema = search.schema()
    assert schema["type"] == "function"
    assert set(schema["function"]) == {"name", "description", "parameters"}
    assert schema["function"]["name"] == "search"
    assert schema["function"]["parameters"] is search.parameters


def test_decorator_with_options_and_from_function() -> None:
    @tool(name="custom-name", description="Overridden.", needs_approval=True, timeout=5)
    def f(x: int) -> int:
        return x

    assert (f.name, f.description, f.needs_approval, f.timeout) == (
        "custom-name",
        "Overridden.",
        True,
        5,
    )
    assert f.raise_errors is False

    def g(x: int) -> int:
        """Double x."""
        return 2 * x

    t = Tool.from_function(g, raise_errors=True)
    assert (t.name, t.description, t.raise_errors, t.needs_approval) == (
        "g",
        "Double x.",
        True,
        False,
    )
    assert t.fn is g
    assert t(4) == 8  # still callable directly
    assert Tool.from_function(t) is t


async def test_parameter_names_that_clash_with_basemodel_attributes() -> None:
    @tool()
    def names(json: str, schema: int, model_config: bool = False, _hidden: str = "h") -> str:
        """Echo the arguments.

        Args:
            json: A JSON text.
        """
        return f"{json}|{schema}|{model_config}|{_hidden}"

    assert list(names.parameters["properties"]) == ["json", "schema", "model_config", "_hidden"]
    assert names.parameters["properties"]["json"]["description"] == "A JSON text."
    result = await names.run({"json": "{}", "schema": 2, "model_config": True, "_hidden": "x"})
    assert result == ToolResult("{}|2|True|x")
    bad = await names.run({"json": "{}", "p1": 2})
    assert bad.content == (
        "Error: invalid arguments: schema: Field required; p1: Extra inputs are not permitted"
    )


def test_function_without_parameters_has_empty_object_schema() -> None:
    @tool
    def now() -> str:
        """Tell the time."""
        return "noon"

    assert now.parameters["properties"] == {}
    assert now.parameters["required"] == []


def test_parse_docstring_sections_do_not_leak_into_description() -> None:
    description, params = parse_docstring(
        """Summary line.

        Args:
            a: First.
            b (int, optional): Second,
                continued.

        Returns:
            Something with a: colon.
        """
    )
    assert description == "Summary line."
    assert params == {"a": "First.", "b": "Second, continued."}
    assert parse_docstring(None) == ("", {})


# --- decoration-time errors -------------------------------------------------------------------


def test_missing_type_hint_is_reported() -> None:
    def f(x, y: int) -> int:  # type: ignore[no-untyped-def]
        """Doc."""
        return y

    with pytest.raises(ToolDefinitionError, match=r"parameter 'x' has no type hint; add one"):
        tool(f)


def test_var_args_and_kwargs_are_rejected() -> None:
    def f(*items: int) -> int:
        """Doc."""
        return 0

    def g(**extra: int) -> int:
        """Doc."""
        return 0

    with pytest.raises(ToolDefinitionError, match=r"\*items is not allowed"):
        tool(f)
    with pytest.raises(ToolDefinitionError, match=r"\*\*extra is not allowed"):
        tool(g)


def test_positional_only_is_rejected() -> None:
    def f(x: int, /) -> int:
        """Doc."""
        return x

    with pytest.raises(ToolDefinitionError, match=r"positional-only; remove the '/'"):
        tool(f)


@pytest.mark.parametrize("name", ["has space", "", "x" * 65, "dots.not.ok", "<lambda>"])
def test_invalid_names_are_rejected(name: str) -> None:
    def f(x: int) -> int:
        """Doc."""
        return x

    with pytest.raises(ToolDefinitionError, match=r"invalid tool name .*pass name="):
        tool(name=name)(f)


def test_lambda_needs_a_name() -> None:
    with pytest.raises(ToolDefinitionError, match="invalid tool name '<lambda>'"):
        Tool.from_function(lambda x: x, description="d")


def test_valid_name_edge_cases() -> None:
    def f(x: int) -> int:
        """Doc."""
        return x

    assert tool(name="a" * 64)(f).name == "a" * 64
    assert tool(name="A-b_9")(f).name == "A-b_9"


def test_missing_docstring_is_reported_unless_description_given() -> None:
    def f(x: int) -> int:
        return x

    with pytest.raises(ToolDefinitionError, match=r"no description; add a docstring"):
        tool(f)
    assert tool(description="Given.")(f).description == "Given."


def test_documented_parameter_must_exist() -> None:
    def f(x: int) -> int:
        """Doc.

        Args:
            x: Fine.
            y: Not a parameter.
        """
        return x

    with pytest.raises(ToolDefinitionError, match=r"documents 'y' but the function has no such"):
        tool(f)


def test_unresolvable_hint_is_reported() -> None:
    def f(x: NotDefinedAnywhere) -> int:  # type: ignore[name-defined]  # noqa: F821
        """Doc."""
        return 1

    with pytest.raises(ToolDefinitionError, match=r"cannot resolve the type hints"):
        tool(f)


def test_tool_definition_error_is_a_usage_error() -> None:
    assert issubclass(ToolDefinitionError, UsageError)


# --- run: arguments ---------------------------------------------------------------------------


async def test_run_with_json_string_and_dict() -> None:
    result = await search.run('{"query": "cats", "tags": ["a"], "color": "green"}')
    assert result.is_error is False
    assert json.loads(result.content) == {
        "query": "cats",
        "limit": 10,
        "tags": ["a"],
        "mode": "fast",
        "color": "green",
    }
    result = await search.run({"query": "dogs", "limit": 2})
    assert json.loads(result.content)["limit"] == 2


async def test_bad_json_gives_error_result() -> None:
    result = await search.run('{"query": ')
    assert result.is_error
    assert result.content.startswith("Error: the arguments are not valid JSON")
    assert isinstance(result.exception, ToolError)


async def test_non_object_json_gives_error_result() -> None:
    result = await search.run("[1, 2]")
    assert result.is_error
    assert "must be a JSON object, got list" in result.content


async def test_validation_error_lists_bad_fields() -> None:
    result = await search.run({"limit": "many", "mode": "slow", "unknown": 1})
    assert result.is_error
    assert result.content.startswith("Error: invalid arguments: ")
    for field_name in ("query", "limit", "mode", "unknown"):
        assert f"{field_name}: " in result.content
    assert "Field required" in result.content
    assert "Extra inputs are not permitted" in result.content


async def test_empty_arguments_mean_no_arguments() -> None:
    @tool
    def ping() -> str:
        """Answer pong."""
        return "pong"

    assert (await ping.run("")).content == "pong"
    assert (await ping.run(None)).content == "pong"
    assert (await ping.run("{}")).content == "pong"


async def test_nested_model_argument_is_validated_into_model() -> None:
    seen: list[object] = []

    @tool
    def where(point: Point) -> int:
        """Sum coordinates."""
        seen.append(point)
        return point.x + point.y

    assert (await where.run({"point": {"x": 1, "y": 2}})).content == "3"
    assert isinstance(seen[0], Point)
    bad = await where.run({"point": {"x": 1}})
    assert bad.is_error and "point.y: Field required" in bad.content


# --- run: results and errors ------------------------------------------------------------------


async def test_non_string_results_are_json_encoded() -> None:
    class Thing:
        def __repr__(self) -> str:
            return "<thing>"

    values = {
        "a": [1, "ü"],
        "b": None,
        "c": Color.GREEN,
        "d": Point(x=1, y=2),
        "e": Thing(),
    }

    @tool
    def get(key: str) -> object:
        """Get a value."""
        return values[key]

    assert (await get.run({"key": "a"})).content == '[1, "ü"]'
    assert (await get.run({"key": "b"})).content == "null"
    assert (await get.run({"key": "c"})).content == '"green"'
    assert json.loads((await get.run({"key": "d"})).content) == {"x": 1, "y": 2}
    assert (await get.run({"key": "e"})).content == '"<thing>"'


async def test_tool_result_is_passed_through() -> None:
    @tool
    def custom() -> ToolResult:
        """Return a ready result."""
        return ToolResult("careful", is_error=True)

    assert await custom.run() == ToolResult("careful", is_error=True)


async def test_exception_becomes_error_result_with_exception_attached() -> None:
    @tool
    def boom(x: int) -> int:
        """Fail."""
        raise ValueError(f"bad value {x}")

    result = await boom.run({"x": 3})
    assert result == ToolResult(
        "Error: ValueError: bad value 3", is_error=True, exception=result.exception
    )
    assert isinstance(result.exception, ValueError)


async def test_tool_error_message_goes_to_model_as_is() -> None:
    @tool
    async def picky() -> str:
        """Fail politely."""
        raise ToolError("file not found; try list_files first")

    result = await picky.run()
    assert result.content == "Error: file not found; try list_files first"
    assert result.is_error and isinstance(result.exception, ToolError)


async def test_raise_errors_reraises_but_still_reports_tool_and_argument_errors() -> None:
    @tool(raise_errors=True)
    def strict(x: int) -> int:
        """Fail loudly."""
        if x == 0:
            raise ToolError("zero is not allowed")
        raise RuntimeError("crash")

    with pytest.raises(RuntimeError, match="crash"):
        await strict.run({"x": 1})
    assert (await strict.run({"x": 0})).content == "Error: zero is not allowed"
    assert (await strict.run("not json")).is_error


async def test_keyboard_interrupt_propagates_from_sync_and_async_tools() -> None:
    @tool
    def sync_stop() -> str:
        """Interrupt."""
        raise KeyboardInterrupt

    @tool
    async def async_stop() -> str:
        """Interrupt."""
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        await sync_stop.run()
    with pytest.raises(KeyboardInterrupt):
        await async_stop.run()


async def test_cancelled_error_propagates() -> None:
    started = asyncio.Event()

    @tool
    async def wait_forever() -> str:
        """Wait."""
        started.set()
        await asyncio.sleep(60)
        return "never"

    @tool
    async def cancel_itself() -> str:
        """Raise CancelledError."""
        raise asyncio.CancelledError

    task = asyncio.create_task(wait_forever.run())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(asyncio.CancelledError):
        await cancel_itself.run()


async def test_sync_tools_run_in_a_thread_and_async_tools_in_the_loop() -> None:
    main = threading.get_ident()

    @tool
    def sync_where() -> int:
        """Thread id."""
        return threading.get_ident()

    @tool
    async def async_where() -> int:
        """Thread id."""
        return threading.get_ident()

    assert sync_where.is_async is False and async_where.is_async is True
    assert int((await sync_where.run()).content) != main
    assert int((await async_where.run()).content) == main


async def test_sync_tools_do_not_block_the_event_loop() -> None:
    @tool
    def slow() -> str:
        """Block for a while."""
        time.sleep(0.3)
        return "ok"

    start = time.perf_counter()
    results = await asyncio.gather(slow.run(), slow.run(), slow.run())
    assert [r.content for r in results] == ["ok"] * 3
    assert time.perf_counter() - start < 0.8


async def test_timeout_gives_error_result() -> None:
    @tool(timeout=0.05)
    async def sleepy() -> str:
        """Sleep."""
        await asyncio.sleep(5)
        return "late"

    @tool(timeout=0.05)
    def sleepy_sync() -> str:
        """Sleep in a thread."""
        time.sleep(0.3)
        return "late"

    for t in (sleepy, sleepy_sync):
        start = time.perf_counter()
        result = await t.run()
        assert time.perf_counter() - start < 0.25
        assert result.is_error
        assert result.content == f"Error: tool '{t.name}' timed out after 0.05 s"
        assert isinstance(result.exception, TimeoutError)


def test_invalid_timeout_is_rejected() -> None:
    def f() -> str:
        """Doc."""
        return ""

    with pytest.raises(ToolDefinitionError, match="timeout must be > 0"):
        tool(timeout=0)(f)


@settings(max_examples=60, deadline=None)
@given(st.text())
def test_run_never_raises_for_any_argument_text(text: str) -> None:
    result = asyncio.run(search.run(text))
    assert isinstance(result, ToolResult)
    if result.is_error:
        assert result.content.startswith("Error: ")


@settings(max_examples=40, deadline=None)
@given(st.text())
def test_string_arguments_round_trip(value: str) -> None:
    @tool
    def echo(text: str) -> str:
        """Echo."""
        return text

    result = asyncio.run(echo.run(json.dumps({"text": value})))
    assert result == ToolResult(value)


# --- registry ---------------------------------------------------------------------------------


def _plain(text: str) -> str:
    """Upper-case the text."""
    return text.upper()


async def test_registry_add_get_remove_iter_len_schemas_run() -> None:
    registry = ToolRegistry([search])
    added = registry.add(_plain)
    assert isinstance(added, Tool) and added.name == "_plain"
    assert len(registry) == 2
    assert [t.name for t in registry] == ["search", "_plain"]
    assert registry.names() == ["search", "_plain"]
    assert "search" in registry and search in registry and "nope" not in registry
    assert registry.get("search") is search and registry.get("nope") is None
    assert [s["function"]["name"] for s in registry.schemas()] == ["search", "_plain"]
    assert (await registry.run("_plain", '{"text": "hi"}')).content == "HI"
    missing = await registry.run("nope", "{}")
    assert missing.is_error
    assert missing.content == 'Error: tool "nope" does not exist; available tools: search, _plain'
    assert registry.remove("_plain") is added
    assert len(registry) == 1
    with pytest.raises(KeyError, match="no tool named '_plain'"):
        registry.remove("_plain")


def test_registry_rejects_duplicates_and_non_tools() -> None:
    registry = ToolRegistry()
    registry.add(search)
    with pytest.raises(UsageError, match=r"a tool named 'search' is registered already"):
        registry.add(search)
    with pytest.raises(UsageError, match="pass a Tool or a function"):
        registry.add(42)  # type: ignore[arg-type]
    with pytest.raises(ToolDefinitionError):
        registry.add(lambda: None)
    assert len(registry) == 1


def test_registry_accepts_mcp_style_tool_objects() -> None:
    async def call(**arguments: object) -> ToolResult:
        return ToolResult(json.dumps(arguments))

    remote = Tool(
        name="server__do",
        description="A remote tool.",
        parameters={"type": "object", "properties": {"weird-name": {"type": "string"}}},
        fn=call,
    )
    registry = ToolRegistry()
    registry.add(remote)
    assert registry.get("server__do") is remote
    result = asyncio.run(remote.run('{"weird-name": "x"}'))
    assert json.loads(result.content) == {"weird-name": "x"}
    with pytest.raises(ToolDefinitionError, match="invalid tool name"):
        Tool(name="bad name", description="d", parameters={}, fn=call)
