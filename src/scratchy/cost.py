"""What model calls cost, from the price data of the ``genai-prices`` package, kept per session.

Every model call is priced once, when it ends (:meth:`Agent._account
<scratchy.agent.Agent._account>` calls :func:`call_usage`), with the price data *installed* with
``genai-prices``: nothing is fetched at run time (its opt-in ``UpdatePrices`` is never started,
and a snapshot another library may have fetched is not used either). The result goes into the
session's store-owned usage totals (``metadata["usage"]``) next to the token counts, as whole
numbers that the store adds up under its own lock, the way token counts are:

``cost_nano_usd``
    What the priced calls cost, in nano-dollars (1 = $0.000000001). Each call's price is rounded
    to the nearest nano-dollar once; totals are sums of integers, so they never drift.
``priced_calls`` / ``unpriced_calls``
    Calls with a price (free ones included) and calls without one (a model or server the price
    data does not know, or a provider that reported no token counts).
``costed_tokens``
    The tokens of the calls counted in ``priced_calls`` and ``unpriced_calls``; tokens beyond
    them were counted before Scratchy kept costs, so their cost is not known either.

A cost is never guessed: :class:`Cost` reads those totals back and says ``$0.0123`` when every
call is priced, ``≥ $0.0123 (2 of 9 calls unpriced)`` when some are not, and ``unknown (...)``
when none is. Which prices apply to a provider is :func:`pricing_of`'s decision (see its
docstring, and docs/observability.md).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # decimal is imported where amounts are computed (import scratchy stays light)
    from decimal import Decimal

__all__ = [
    "COST_KEYS",
    "Cost",
    "Pricing",
    "call_usage",
    "format_usd",
    "prepare",
    "price_of_call",
    "pricing_of",
]

logger = logging.getLogger("scratchy")

NANO_PER_USD = 10**9
COST_KEYS = ("cost_nano_usd", "priced_calls", "unpriced_calls", "costed_tokens")
"""The keys this module adds to ``metadata["usage"]`` (all integers)."""

VENDORS = {"openai": "openai", "groq": "groq", "gemini": "google", "anthropic": "anthropic"}
"""Scratchy provider name -> the genai-prices provider id of its vendor's own API."""
FREE = {
    "local": "runs on this machine",
    "ollama": "runs on your Ollama server",
    "fake": "a scripted test model",
}
"""Providers whose calls cost nothing per token, and why."""


@dataclass(frozen=True, slots=True)
class Pricing:
    """How the calls of one provider and model are priced."""

    kind: Literal["priced", "free", "unpriced"]
    reason: str = ""
    """Why the calls are free or unpriced (one short clause)."""
    provider_id: str = ""
    """The genai-prices provider id (``kind == "priced"``)."""
    model: str = ""
    input_mtok: Decimal | None = None
    """USD per million input tokens, when the model has one flat rate."""
    output_mtok: Decimal | None = None
    """USD per million output tokens, when the model has one flat rate."""

    def describe(self) -> str:
        """One line for ``/status``: the rates, ``free (...)`` or ``unknown (...)``."""
        if self.kind == "free":
            return f"free ({self.reason})"
        if self.kind == "unpriced":
            return f"unknown ({self.reason})"
        if self.input_mtok is not None and self.output_mtok is not None:
            return f"${_plain(self.input_mtok)} in, ${_plain(self.output_mtok)} out per 1M tokens"
        return f"from genai-prices ({self.provider_id} {self.model}: tiered rates)"


_lock = threading.Lock()
_cache: dict[tuple[str, str, str], Pricing] = {}
_snapshot: Any = None
_missing: str | None = None


def _prices() -> Any:
    """The price data installed with genai-prices (a ``DataSnapshot`` of our own, so that
    nothing fetched at run time by anyone is used), or None when the package is missing."""
    global _snapshot, _missing
    with _lock:
        if _snapshot is None and _missing is None:
            try:
                from genai_prices.data import providers
                from genai_prices.data_snapshot import DataSnapshot
            except ImportError:
                _missing = "genai-prices is not installed: pip install genai-prices"
            else:
                _snapshot = DataSnapshot(providers=providers, from_auto_update=False)
        return _snapshot


def _plain(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    if "." in text and len(text.split(".")[1]) == 1:
        text += "0"
    return text


def _url(provider: Any) -> str:
    url = getattr(provider, "base_url", None)
    return str(url) if url else ""


def pricing_of(provider: Any) -> Pricing:
    """Which prices apply to ``provider``'s calls (decided once per provider, model and URL).

    * ``local`` (the embedded llama.cpp model) and ``ollama``: free, they run on your machine
      or your server, with no per-token bill; except Ollama's ``...-cloud`` models, unpriced.
      ``fake`` (the scripted test model, which calls nothing) is free too.
    * ``openai``, ``groq``, ``gemini``, ``anthropic`` on their vendor's own API: that vendor's
      prices for the model, when genai-prices has it; an unknown model is unpriced.
    * Any other base URL (``openai-compatible``, or ``OPENAI_BASE_URL`` set): the prices of the
      vendor whose API that URL is (OpenRouter, DeepSeek, Together...), else unpriced: a server
      on ``localhost`` may be llama.cpp (free) or a proxy to a paid API, so it is not guessed.
    * Another provider object: the genai-prices provider with exactly its ``name`` (such as
      ``mistral`` or ``deepseek``), else unpriced.
    """
    name, model, url = str(provider.name), str(provider.model), _url(provider)
    key = (name, model, url)
    found = _cache.get(key)
    if found is None:
        try:
            found = _decide(name, model, url)
        except Exception as exc:  # noqa: BLE001 - a price problem must never fail a turn
            logger.warning("could not look up the prices of %s:%s: %s", name, model, exc)
            return Pricing("unpriced", f"price lookup failed: {exc}")
        _cache[key] = found
    return found


def _decide(name: str, model: str, url: str) -> Pricing:
    if name == "ollama" and (model.endswith("-cloud") or model.endswith(":cloud")):
        return Pricing("unpriced", "Ollama bills cloud models by plan, not per token")
    if name in FREE:
        return Pricing("free", FREE[name])
    snapshot = _prices()
    if snapshot is None:
        return Pricing("unpriced", _missing or "no price data")
    from genai_prices.data_snapshot import find_provider_by_id

    if url and not (name in VENDORS and _matches(snapshot, VENDORS[name], url)):
        vendor = next((p for p in snapshot.providers if _pattern_match(p, url)), None)
        if vendor is None:
            return Pricing("unpriced", f"no prices for {url}")
        provider_id = vendor.id
    elif name in VENDORS:
        provider_id = VENDORS[name]
    else:
        vendor = find_provider_by_id(snapshot.providers, name)
        if vendor is None or vendor.id != name.lower():
            return Pricing("unpriced", f"no price data for {name}")
        provider_id = vendor.id
    try:
        _, info = snapshot.find_provider_model(model, None, provider_id, None)
    except LookupError:
        from genai_prices import __version__

        return Pricing("unpriced", f"no price in genai-prices {__version__}")
    from decimal import Decimal

    rates: dict[str, Decimal | None] = {"input_mtok": None, "output_mtok": None}
    try:
        current = info.get_prices(datetime.now(UTC))
        for field in rates:
            value = getattr(current, field, None)
            rates[field] = value if isinstance(value, Decimal) else None
    except Exception:  # noqa: BLE001 - the rates only decorate /status
        pass
    return Pricing("priced", "", provider_id, model, rates["input_mtok"], rates["output_mtok"])


def _pattern_match(vendor: Any, url: str) -> bool:
    import re

    return bool(re.match(vendor.api_pattern, url))


def _matches(snapshot: Any, provider_id: str, url: str) -> bool:
    return any(p.id == provider_id and _pattern_match(p, url) for p in snapshot.providers)


def price_of_call(provider: Any, usage: Any, *, when: datetime | None = None) -> int | None:
    """The cost of one call in nano-dollars (rounded half to even), or None when unknown.

    Args:
        provider: The provider that made the call (its ``name``, ``model``, ``base_url``).
        usage: Its :class:`~scratchy.providers.base.Usage` (None: not reported).
        when: When the call was made (default now): prices that changed apply from their date.
    """
    pricing = pricing_of(provider)
    if pricing.kind == "free":
        return 0
    if pricing.kind == "unpriced" or usage is None:
        return None
    from genai_prices import Usage as PriceUsage

    counts = {
        key: int(getattr(usage, key, 0) or 0)
        for key in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")
    }
    try:
        calc = _prices().calc(
            PriceUsage(**{k: v for k, v in counts.items() if v}),
            pricing.model,
            pricing.provider_id,
            None,
            when or datetime.now(UTC),
        )
    except Exception as exc:  # noqa: BLE001 - a price problem must never fail a turn
        logger.warning("could not price a %s call: %s", pricing.model, exc)
        return None
    from decimal import ROUND_HALF_EVEN, Decimal

    nano = (Decimal(calc.total_price) * NANO_PER_USD).quantize(Decimal(1), ROUND_HALF_EVEN)
    return int(nano)


def call_usage(provider: Any, response: Any) -> dict[str, int]:
    """The increments one model call adds to a session's usage totals: its tokens (when the
    provider reported them) and its cost keys (see the module docstring)."""
    usage = response.usage
    delta: dict[str, int] = {}
    if usage is not None:
        delta["input_tokens"] = int(usage.input_tokens)
        delta["output_tokens"] = int(usage.output_tokens)
        for key in ("cache_read_tokens", "cache_write_tokens"):
            if getattr(usage, key, 0):
                delta[key] = int(getattr(usage, key))
    nano = price_of_call(provider, usage)
    if nano is None:
        delta["unpriced_calls"] = 1
    else:
        delta["cost_nano_usd"] = nano
        delta["priced_calls"] = 1
    if usage is not None:
        delta["costed_tokens"] = delta["input_tokens"] + delta["output_tokens"]
    return delta


def prepare(provider: Any) -> None:
    """Load the price data in a background thread while the first model call runs, so that
    pricing it adds no wait (nothing happens when it is loaded, or not needed)."""
    if _snapshot is not None or _missing is not None or str(provider.name) in FREE:
        return

    def load() -> None:
        try:
            pricing_of(provider)
        except Exception:  # noqa: BLE001 - the call itself prices again and says why
            logger.debug("loading the price data failed", exc_info=True)

    threading.Thread(target=load, name="scratchy-prices", daemon=True).start()


def format_usd(nano_usd: int, *, at_least: bool = False) -> str:
    """An amount in nano-dollars as text: ``$0``, ``$0.000042`` (two significant digits below a
    cent), ``$0.0123`` (four decimals below a dollar), ``$12.34``. ``at_least`` rounds down, so
    that a lower bound stays one."""
    if nano_usd == 0:
        return "$0"
    from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal

    value = Decimal(nano_usd).scaleb(-9)
    rounding = ROUND_DOWN if at_least else ROUND_HALF_EVEN
    if value.quantize(Decimal("0.0001"), rounding) >= 1:
        return "$" + format(value.quantize(Decimal("0.01"), rounding), ",f")
    if value.quantize(Decimal("0.0001"), rounding) >= Decimal("0.01"):
        return "$" + format(value.quantize(Decimal("0.0001"), rounding), "f")
    step = Decimal(1).scaleb(value.adjusted() - 1)  # two significant digits
    text = format(value.quantize(step, rounding), "f").rstrip("0")
    return "$" + text


def _exact(nano_usd: int) -> str:
    """The exact decimal text of an amount in nano-dollars (``0.00021``, ``0``)."""
    from decimal import Decimal

    text = format(Decimal(nano_usd).scaleb(-9), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


@dataclass(frozen=True, slots=True)
class Cost:
    """A session's (or several sessions') cost, read from its usage totals.

    ``Cost.of(info.metadata)`` for a stored session, ``Cost.of(session.metadata)`` in memory;
    ``sum(costs, Cost())`` totals several. ``str(cost)`` is the text Scratchy shows.
    """

    nano_usd: int = 0
    """What the priced calls cost, in nano-dollars (a lower bound unless :attr:`complete`)."""
    priced_calls: int = 0
    unpriced_calls: int = 0
    untracked_tokens: int = 0
    """Tokens counted before costs were kept (their cost is unknown)."""

    @classmethod
    def of(cls, source: Mapping[str, Any] | None) -> Cost:
        """The cost of a session's ``metadata`` (or of its ``metadata["usage"]`` dict)."""
        usage = source.get("usage") if source and isinstance(source.get("usage"), dict) else source
        if not isinstance(usage, Mapping):
            return cls()

        def number(key: str) -> int:
            value = usage.get(key, 0)
            return value if isinstance(value, int) and not isinstance(value, bool) else 0

        tokens = number("input_tokens") + number("output_tokens")
        return cls(
            number("cost_nano_usd"),
            number("priced_calls"),
            number("unpriced_calls"),
            max(0, tokens - number("costed_tokens")),
        )

    def __add__(self, other: Cost) -> Cost:
        if not isinstance(other, Cost):
            return NotImplemented
        return Cost(
            self.nano_usd + other.nano_usd,
            self.priced_calls + other.priced_calls,
            self.unpriced_calls + other.unpriced_calls,
            self.untracked_tokens + other.untracked_tokens,
        )

    @property
    def calls(self) -> int:
        """Model calls counted (priced or not)."""
        return self.priced_calls + self.unpriced_calls

    @property
    def complete(self) -> bool:
        """True when every call is priced: :attr:`usd` is then the whole cost."""
        return self.unpriced_calls == 0 and self.untracked_tokens == 0

    @property
    def status(self) -> Literal["complete", "partial", "unknown"]:
        """``complete``, ``partial`` (:attr:`usd` is a lower bound) or ``unknown``."""
        if self.complete:
            return "complete"
        return "partial" if self.priced_calls else "unknown"

    @property
    def usd(self) -> Decimal | None:
        """The cost in dollars, exact (a lower bound when partial); None when unknown."""
        from decimal import Decimal

        return None if self.status == "unknown" else Decimal(self.nano_usd).scaleb(-9)

    def _notes(self, short: bool) -> str:
        notes = []
        if self.unpriced_calls:
            if short:
                notes.append(f"{self.unpriced_calls} unpriced")
            else:
                notes.append(f"{self.unpriced_calls} of {_count(self.calls, 'call')} unpriced")
        if self.untracked_tokens:
            notes.append(
                "older usage"
                if short
                else f"{self.untracked_tokens} tokens from before cost tracking"
            )
        return "; ".join(notes)

    def text(self, *, short: bool = False) -> str:
        """``$0.0123``, ``≥ $0.0123 (2 of 9 calls unpriced)`` or ``unknown (3 of 3 calls
        unpriced)``; ``short`` for table cells (``≥ $0.0123 (2 unpriced)``)."""
        if self.complete:
            return format_usd(self.nano_usd)
        if self.status == "unknown":
            return f"unknown ({self._notes(short)})"
        return f"≥ {format_usd(self.nano_usd, at_least=True)} ({self._notes(short)})"

    def __str__(self) -> str:
        return self.text()

    def as_dict(self) -> dict[str, Any]:
        """The JSON form: ``usd`` (exact decimal text; a lower bound when ``status`` is
        ``partial``, null when ``unknown``), ``status``, the call counts and
        ``untracked_tokens``."""
        return {
            "usd": None if self.status == "unknown" else _exact(self.nano_usd),
            "status": self.status,
            "priced_calls": self.priced_calls,
            "unpriced_calls": self.unpriced_calls,
            "untracked_tokens": self.untracked_tokens,
        }
