"""The hosted APIs' bills: per-token prices, the bill of each request, provisioned fees, and
which provider serves which class.

A scenario may name several API providers: the ``api`` section and the named entries of
``apis``; a class picks one with ``api_model`` (a name in ``apis``, or a price-catalogue key
billed at the catalogue's prices with the ``api`` section's rate limits, latency and batch
discount). :func:`api_providers` resolves that choice once; the simulator and the cost
accounting read it from :class:`ApiProviders`. With prompt identities,
:func:`api_cache_tokens` replays each provider's prompt cache over a run's requests
(:mod:`sim.economics.prompt_cache`). Nothing here reads files or draws random numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypeAlias

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from sim.catalog.prices import ApiPrice, api_price
from sim.economics.prompt_cache import (
    EXPLICIT_LONG_WRITE_MULTIPLIER,
    EXPLICIT_WRITE_MULTIPLIER,
    replay_options,
    resolve_cache_rule,
)
from sim.economics.spec import ApiSpec, ProvisionedSpec
from sim.seeds import MAIN_PROVIDER
from sim.workload.identity import PromptBlocks

__all__ = [
    "MAIN_API",
    "ApiProviders",
    "CacheTokens",
    "api_bill",
    "api_cache_tokens",
    "api_providers",
    "provider_rows",
    "provisioned_fee",
    "resolve_api_prices",
]

CacheTokens: TypeAlias = tuple[
    NDArray[np.int64], NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]
]
"""Per request row: tokens read from and written to the API's cache in the run, and the
same had every request gone to the API (:func:`api_cache_tokens`)."""


#: Provider name of the scenario's ``api`` section.
MAIN_API = MAIN_PROVIDER  # the scenario's `api` section


def resolve_api_prices(spec: ApiSpec) -> ApiPrice:
    """Per-token prices of the scenario's API: the catalogue entry, explicit fields winning.

    The cached-input price falls back to the catalogue's, then to the input price (no
    prompt-cache discount) when neither is known. The cache-write price is
    ``prompt_cache.usd_per_1m_cache_write`` if given; for explicit caching with a lifetime
    above 5 minutes, 2 x input; else the catalogue's; else, for explicit caching, 1.25 x
    input; else None (writes cost the input price).

    Examples
    --------
    >>> p = resolve_api_prices(ApiSpec(model="together_ai/Meta-Llama-3.1-8B-Instruct-Turbo"))
    >>> p.usd_per_1m_input, p.usd_per_1m_cached_input
    (0.18, 0.18)
    >>> resolve_api_prices(ApiSpec(model="gpt-4o-mini", usd_per_1m_output=0.5)).usd_per_1m_output
    0.5
    """
    base = api_price(spec.model) if spec.model is not None else None
    p_in = spec.usd_per_1m_input if spec.usd_per_1m_input is not None else None
    p_out = spec.usd_per_1m_output if spec.usd_per_1m_output is not None else None
    p_cached = spec.usd_per_1m_cached_input
    if base is not None:
        p_in = base.usd_per_1m_input if p_in is None else p_in
        p_out = base.usd_per_1m_output if p_out is None else p_out
        p_cached = base.usd_per_1m_cached_input if p_cached is None else p_cached
    assert p_in is not None and p_out is not None  # guaranteed by ApiSpec's validator
    rule = resolve_cache_rule(spec)
    over = spec.prompt_cache
    write = over.usd_per_1m_cache_write if over is not None else None
    if write is None and rule.kind == "explicit" and rule.ttl_s > 300.0:
        write = EXPLICIT_LONG_WRITE_MULTIPLIER * p_in
    if write is None and base is not None:
        write = base.cache_write_usd_per_1m
    if write is None and rule.kind == "explicit":
        write = EXPLICIT_WRITE_MULTIPLIER * p_in
    return ApiPrice(
        key=base.key if base is not None else "custom",
        usd_per_1m_input=p_in,
        usd_per_1m_output=p_out,
        usd_per_1m_cached_input=p_in if p_cached is None else p_cached,
        source=spec.price_source or (base.source if base is not None else "scenario"),
        quote_date=spec.price_date or (base.quote_date if base is not None else ""),
        confidence=base.confidence if base is not None else "",
        cache_write_usd_per_1m=write,
        cache_ttl_s=base.cache_ttl_s if base is not None else None,
        cache_min_tokens=base.cache_min_tokens if base is not None else None,
        batch_discount=base.batch_discount if base is not None else None,
        cache_mode=rule.kind,
        cache_increment_tokens=base.cache_increment_tokens if base is not None else None,
    )


def api_bill(
    input_tokens: ArrayLike,
    cached_input_tokens: ArrayLike,
    output_tokens: ArrayLike,
    *,
    prices: ApiPrice,
    batch: ArrayLike | None = None,
    batch_discount: float = 0.0,
    provisioned: ArrayLike | None = None,
    cache_write_tokens: ArrayLike | None = None,
) -> NDArray[np.float64]:
    """Pay-per-token price of each request, USD.

    ``((input − cached − written) · p_in + cached · p_cached + written · p_write
    + output · p_out) / 1e6``, times ``1 − batch_discount`` for requests sent through the
    batch API (the discounts stack, as Anthropic and OpenAI bill them); 0 for requests
    served under provisioned throughput (their cost is the hourly :func:`provisioned_fee`).
    ``input_tokens`` is the whole prompt, of which ``cached_input_tokens`` hit the cache and
    ``cache_write_tokens`` were written to it.

    Parameters
    ----------
    input_tokens, cached_input_tokens, output_tokens : array_like
        Per request, same length; 0 ≤ cached ≤ input.
    prices : ApiPrice, keyword-only
        A missing cached-input price means the input price.
    batch : array_like of bool, optional
        Requests sent through the batch API.
    batch_discount : float, keyword-only
        Fraction off for batch requests, in [0, 1).
    provisioned : array_like of bool, optional
        Requests served under provisioned throughput.
    cache_write_tokens : array_like, optional, keyword-only
        Per request, prompt tokens written to the provider's cache (default none); billed at
        ``prices.cache_write_usd_per_1m``, or the input price where that is None.

    Returns
    -------
    ndarray of float64

    Examples
    --------
    >>> p = ApiPrice("x/y", 1.0, 4.0, 0.5, "", "")
    >>> api_bill([1000, 1000, 1000], [400, 0, 0], [100, 100, 100], prices=p,
    ...          batch=[False, True, False], batch_discount=0.5,
    ...          provisioned=[False, False, True]).tolist()
    [0.0012, 0.0007, 0.0]

    Writes at 1.25 x input: 600 plain, 400 written, 100 out.

    >>> w = ApiPrice("x/y", 1.0, 4.0, 0.1, "", "", cache_write_usd_per_1m=1.25)
    >>> api_bill([1000], [0], [100], prices=w, cache_write_tokens=[400]).tolist()
    [0.0015]
    """
    inp = np.asarray(input_tokens, dtype=np.float64)
    cached = np.asarray(cached_input_tokens, dtype=np.float64)
    out = np.asarray(output_tokens, dtype=np.float64)
    if not inp.shape == cached.shape == out.shape:
        raise ValueError("input, cached input and output token arrays must have the same shape")
    if np.any(out < 0) or np.any(cached < 0) or np.any(cached > inp):
        raise ValueError("token counts must be >= 0 with cached_input_tokens <= input_tokens")
    if not 0.0 <= batch_discount < 1.0:
        raise ValueError(f"batch_discount must be in [0, 1), got {batch_discount!r}")
    p_cached = prices.usd_per_1m_cached_input
    p_cached = prices.usd_per_1m_input if p_cached is None else p_cached
    usd = (
        (inp - cached) * prices.usd_per_1m_input
        + cached * p_cached
        + out * prices.usd_per_1m_output
    )
    if cache_write_tokens is not None:
        written = np.asarray(cache_write_tokens, dtype=np.float64)
        if written.shape != inp.shape:
            raise ValueError("cache_write_tokens must have the shape of input_tokens")
        if np.any(written < 0) or np.any(cached + written > inp):
            raise ValueError("cache_write_tokens must be >= 0 with cached + written <= input")
        p_write = prices.cache_write_usd_per_1m
        p_write = prices.usd_per_1m_input if p_write is None else p_write
        usd += written * (p_write - prices.usd_per_1m_input)
    usd /= 1e6
    if batch is not None:
        usd = np.where(np.asarray(batch, dtype=bool), usd * (1.0 - batch_discount), usd)
    if provisioned is not None:
        usd = np.where(np.asarray(provisioned, dtype=bool), 0.0, usd)
    return usd


def provisioned_fee(spec: ApiSpec | ProvisionedSpec | None, window_s: float) -> float:
    """Fee of provisioned API throughput over a window: ``usd_per_hour · window_s / 3600``.

    0 when the API (or ``spec``) has no provisioned throughput. The fee is owed whether or
    not any request used the capacity.

    Examples
    --------
    >>> provisioned_fee(ProvisionedSpec(usd_per_hour=12.0, tokens_per_s=1000), 1800.0)
    6.0
    """
    prov = spec.provisioned if isinstance(spec, ApiSpec) else spec
    return 0.0 if prov is None else prov.usd_per_hour * window_s / 3600.0


@dataclass(frozen=True)
class ApiProviders:
    """The API providers of a scenario and the one each class uses.

    Attributes
    ----------
    specs : Mapping[str, ApiSpec]
        Provider name → its spec, in a fixed order: :data:`MAIN_API` (``"api"``) for the
        scenario's ``api`` section, ``"apis.NAME"`` for a named provider, ``"catalogue.KEY"``
        for a price-catalogue key named by a class. Each is simulated and billed on its own
        (its own token buckets, latency draws and prices).
    of_class : Mapping[str, str or None]
        Class name → the name of its provider; None for a class without any API.
    """

    specs: Mapping[str, ApiSpec]
    of_class: Mapping[str, str | None]

    def spec_of(self, class_name: str) -> ApiSpec | None:
        """The provider of a class (None: the class has no API). A class not listed uses
        the ``api`` section, if any."""
        name = self.of_class.get(class_name, MAIN_API)
        return None if name is None else self.specs.get(name)

    @property
    def complete(self) -> bool:
        """Every class has an API (the all-API alternative exists)."""
        return all(name is not None for name in self.of_class.values())

    def used(self) -> tuple[str, ...]:
        """Providers that serve at least one class, in the order of :attr:`specs`."""
        serving = set(self.of_class.values())
        return tuple(name for name in self.specs if name in serving)

    @classmethod
    def single(cls, api: ApiSpec | None, class_names: tuple[str, ...] = ()) -> ApiProviders:
        """Every class on one API (or, with ``api=None``, no class on any)."""
        specs = {} if api is None else {MAIN_API: api}
        name = None if api is None else MAIN_API
        return cls(MappingProxyType(specs), MappingProxyType(dict.fromkeys(class_names, name)))


def api_providers(
    api: ApiSpec | None,
    apis: Mapping[str, ApiSpec],
    class_models: Mapping[str, str | None],
) -> ApiProviders:
    """Resolve each class's API provider.

    A class's ``api_model`` naming a key of ``apis`` uses that provider; naming a price
    catalogue key, a provider billed at the catalogue's prices for that key (no explicit
    prices) with the ``api`` section's rate limits, latency and batch discount (defaults
    without an ``api`` section) and no provisioned throughput — classes naming the same
    key share it; unset, the ``api`` section; with neither, the class has no API.

    Parameters
    ----------
    api : ApiSpec or None
        The scenario's ``api`` section.
    apis : Mapping[str, ApiSpec]
        The scenario's named providers (``apis``).
    class_models : Mapping[str, str or None]
        Class name → its ``api_model``.

    Returns
    -------
    ApiProviders

    Examples
    --------
    >>> cheap = ApiSpec(usd_per_1m_input=0.1, usd_per_1m_output=0.4)
    >>> p = api_providers(None, {"cheap": cheap},
    ...                   {"chat": "cheap", "code": "openai/gpt-4o", "batch": None})
    >>> dict(p.of_class)
    {'chat': 'apis.cheap', 'code': 'catalogue.openai/gpt-4o', 'batch': None}
    >>> p.spec_of("code").model, p.complete
    ('openai/gpt-4o', False)
    """
    specs: dict[str, ApiSpec] = {}
    of_class: dict[str, str | None] = {}
    if api is not None:
        specs[MAIN_API] = api
    for name, spec in apis.items():
        specs[f"apis.{name}"] = spec
    for cls, model in class_models.items():
        if model is None:
            of_class[cls] = MAIN_API if api is not None else None
        elif model in apis:
            of_class[cls] = f"apis.{model}"
        else:
            key = f"catalogue.{model}"
            if key not in specs:
                base = api if api is not None else ApiSpec(model=model)
                specs[key] = ApiSpec(
                    model=model,
                    batch_discount=base.batch_discount,
                    rate_limits=base.rate_limits,
                    latency=base.latency,
                )
            of_class[cls] = key
    return ApiProviders(MappingProxyType(specs), MappingProxyType(of_class))


def api_cache_tokens(
    requests: pd.DataFrame,
    prompts: PromptBlocks,
    api: ApiSpec | ApiProviders | None,
) -> CacheTokens:
    """Each API provider's prompt cache replayed over a run's requests.

    Each provider's rule comes from :func:`~sim.economics.prompt_cache.resolve_cache_rule`; its
    cache is replayed (:func:`sim.economics.prompt_cache.replay_options`) once over the
    requests the API served (``route == "api"`` and completed; every arrival, the warm-up's
    included, since they fill the cache) and once over every request of its classes (the
    all-API alternative).

    Parameters
    ----------
    requests : DataFrame
        ``arrival_s``, ``class_name``, ``input_tokens``, ``route``, ``status``.
    prompts : PromptBlocks
        The rows' prompt-block hashes, one entry per row.
    api : ApiSpec or ApiProviders or None
        As for :func:`cost_metrics`.

    Returns
    -------
    CacheTokens
        ``(cached, written, cached_all, written_all)`` per row, int64.

    Examples
    --------
    >>> import pandas as pd
    >>> from sim.workload.identity import PromptBlocks
    >>> reqs = pd.DataFrame({"arrival_s": [0.0, 60.0], "class_name": ["chat", "chat"],
    ...     "input_tokens": [2000, 2000], "output_tokens": [10, 10],
    ...     "route": ["api", "api"], "status": ["completed", "completed"]})
    >>> blocks = PromptBlocks(512, np.array([0, 4, 8]), np.array([1, 2, 3, 4, 1, 2, 3, 5]))
    >>> c, w, _, _ = api_cache_tokens(reqs, blocks, ApiSpec(model="openai/gpt-4o-mini"))
    >>> c.tolist(), w.tolist()
    ([0, 1536], [1920, 384])
    """
    if len(prompts) != len(requests):
        raise ValueError("prompts must hold one entry per request row")
    classes = requests["class_name"].astype("category")
    cats = np.asarray(classes.cat.categories.astype(str), dtype=object)
    providers, used, every = provider_rows(api, classes.cat.codes.to_numpy(), cats)
    done = (requests["status"] == "completed").to_numpy(dtype=bool)
    return replay_options(
        requests["arrival_s"].to_numpy(dtype=np.float64),
        requests["input_tokens"].to_numpy(),
        prompts,
        {name: (resolve_cache_rule(providers.specs[name]), every[name]) for name in used},
        (requests["route"] == "api").to_numpy(dtype=bool) & done,
    )


def provider_rows(
    api: ApiSpec | ApiProviders | None, codes: NDArray[Any], cats: NDArray[Any]
) -> tuple[ApiProviders, tuple[str, ...], dict[str, NDArray[np.bool_]]]:
    """The providers, those that serve a class (their fees are owed), and for each of them
    which rows it serves.

    Parameters
    ----------
    api : ApiSpec or ApiProviders or None
        One API for every class, or each class's provider.
    codes : ndarray
        Per row, its class's code into ``cats``.
    cats : ndarray
        Class names.

    Returns
    -------
    (ApiProviders, tuple of str, dict of str to ndarray of bool)
    """
    if not isinstance(api, ApiProviders):
        # one API for every class, whichever classes the frame holds
        single = ApiProviders.single(api)
        used = tuple(single.specs)
        return single, used, {name: np.ones(len(codes), dtype=bool) for name in used}
    fallback = MAIN_API if MAIN_API in api.specs else None
    present = cats[np.unique(codes)]
    of_class = {str(c): api.of_class.get(str(c), fallback) for c in present}
    serving = set(api.of_class.values()) | set(of_class.values())
    used = tuple(name for name in api.specs if name in serving)
    rows = {
        name: np.isin(cats, [c for c, p in of_class.items() if p == name])[codes] for name in used
    }
    return api, used, rows
