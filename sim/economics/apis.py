"""The hosted APIs' bills: per-token prices, the bill of each request, provisioned fees, and
which provider serves which class.

A scenario may name several API providers: the ``api`` section and the named entries of
``apis``; a class picks one with ``api_model`` (a name in ``apis``, or a price-catalogue key
billed at the catalogue's prices with the ``api`` section's rate limits, latency and batch
discount). :func:`api_providers` resolves that choice once; the simulator and the cost
accounting read it from :class:`ApiProviders`. Nothing here reads files or draws random
numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
from numpy.typing import ArrayLike, NDArray

from sim.catalog.prices import ApiPrice, api_price
from sim.economics.spec import ApiSpec, ProvisionedSpec
from sim.seeds import MAIN_PROVIDER

__all__ = [
    "MAIN_API",
    "ApiProviders",
    "api_bill",
    "api_providers",
    "provisioned_fee",
    "resolve_api_prices",
]

#: Provider name of the scenario's ``api`` section.
MAIN_API = MAIN_PROVIDER  # the scenario's `api` section


def resolve_api_prices(spec: ApiSpec) -> ApiPrice:
    """Per-token prices of the scenario's API: the catalogue entry, explicit fields winning.

    The cached-input price falls back to the catalogue's, then to the input price (no
    prompt-cache discount) when neither is known.

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
    return ApiPrice(
        key=base.key if base is not None else "custom",
        usd_per_1m_input=p_in,
        usd_per_1m_output=p_out,
        usd_per_1m_cached_input=p_in if p_cached is None else p_cached,
        source=spec.price_source or (base.source if base is not None else "scenario"),
        quote_date=spec.price_date or (base.quote_date if base is not None else ""),
        confidence=base.confidence if base is not None else "",
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
) -> NDArray[np.float64]:
    """Pay-per-token price of each request, USD.

    ``((input − cached) · p_in + cached · p_cached + output · p_out) / 1e6``, times
    ``1 − batch_discount`` for requests sent through the batch API; 0 for requests served
    under provisioned throughput (their cost is the hourly :func:`provisioned_fee`).
    ``input_tokens`` is the whole prompt, of which ``cached_input_tokens`` hit the cache.

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
    ) / 1e6
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
