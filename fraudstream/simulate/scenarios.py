"""Fraud scenarios: what attackers do, each with a recognisable behavioural signature.

Each scenario turns a number of incidents into fraudulent transactions (``Columns``), drawing victims
and context from the population and from the legitimate traffic already generated (a skimmed shop's
real customers, the place a card was really used minutes before). Rates are relative weights of the
overall fraud share; a weight of 0 (or leaving a scenario out) switches it off.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from fraudstream.events.contract import PAYMENT_METHODS
from fraudstream.simulate.normal import (
    ATM,
    CARD_PRESENT,
    MOBILE_APP,
    ONLINE,
    Columns,
    choose_payment,
    concat_columns,
    empty_columns,
    physical_merchant_in,
    profile_amounts,
    round_amounts,
    utc_offset_hours,
)
from fraudstream.simulate.population import (
    CARD_SLOT,
    Population,
    category_index,
    country_weights,
    device_codes,
    distance_km,
    stranger_device_codes,
)
from fraudstream.timeunits import MICROS_PER_DAY, MICROS_PER_HOUR, MICROS_PER_MINUTE, MICROS_PER_SECOND

DORMANT_GAP_DAYS = 21.0
IMPOSSIBLE_DISTANCE_KM = 2500.0


@dataclass(frozen=True)
class Context:
    """What a scenario may draw on: the world, the window, and the legitimate traffic in it."""

    population: Population
    rng: np.random.Generator
    start_us: int
    end_us: int
    normal: Columns


@dataclass(frozen=True)
class Scenario:
    name: str
    generate: Callable[[Context, int], Columns]
    events_per_incident: float


def _incident_rows(sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For incidents of the given sizes: the incident of every row and the row's position inside it."""
    incident = np.repeat(np.arange(len(sizes)), sizes)
    first_row = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    return incident, np.arange(len(incident)) - first_row[incident]


def _incident_times(start: np.ndarray, gaps_us: np.ndarray, incident: np.ndarray, position: np.ndarray) -> np.ndarray:
    """Row times: the incident's start plus the running sum of the gaps before each row."""
    gaps_us = np.where(position == 0, 0, gaps_us).astype(np.int64)
    running = np.cumsum(gaps_us)
    return start[incident] + running - (running - gaps_us)[position == 0][incident]


def _uniform_times(context: Context, count: int, margin_us: int) -> np.ndarray:
    span = max(1, context.end_us - context.start_us - margin_us)
    return context.start_us + (context.rng.random(count) * span).astype(np.int64)


def _active_accounts(context: Context, count: int) -> np.ndarray:
    candidates = np.flatnonzero(~context.population.dormant & (context.population.opened_us < context.start_us))
    return context.rng.choice(candidates, size=count)


def _online_merchants_of(context: Context, categories: tuple[str, ...], count: int) -> np.ndarray:
    """Random online merchants of the given categories (any online merchant if the world has none)."""
    population = context.population
    wanted = np.isin(population.merchant_category[population.online_merchants],
                     [category_index(name) for name in categories])
    pool = population.online_merchants[wanted] if wanted.any() else population.online_merchants
    return pool[context.rng.integers(0, len(pool), count)]


def _fraudster_cities(context: Context, countries: np.ndarray) -> np.ndarray:
    """A city per given country, in another country, where fraud rings often operate."""
    population = context.population
    weights = country_weights(7)[population.city_country]
    draws = context.rng.choice(len(weights), size=(len(countries), 4), p=weights / weights.sum())
    foreign = population.city_country[draws] != countries[:, None]
    return draws[np.arange(len(countries)), foreign.argmax(axis=1)]


def _near(context: Context, cities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """IP-level coordinates somewhere in a city."""
    population, rng = context.population, context.rng
    return (np.clip(population.city_latitude[cities] + rng.normal(0, 0.03, len(cities)), -89.9, 89.9),
            np.clip(population.city_longitude[cities] + rng.normal(0, 0.04, len(cities)), -179.9, 179.9))


def _shop_columns(context: Context, accounts: np.ndarray, merchants: np.ndarray, time_us: np.ndarray,
                  amount: np.ndarray) -> Columns:
    """Transactions at terminals with the (cloned) card: the shop's place, the card's device id."""
    population = context.population
    channel = np.full(len(accounts), CARD_PRESENT, dtype=np.int8)
    channel[population.merchant_category[merchants] == category_index("atm_cash")] = ATM
    return {
        "time_us": time_us, "account": accounts, "merchant": merchants, "amount": round_amounts(amount),
        "payment": choose_payment(population, context.rng, accounts, channel), "channel": channel,
        "country": population.city_country[population.merchant_city[merchants]].astype(np.int16),
        "latitude": population.merchant_latitude[merchants], "longitude": population.merchant_longitude[merchants],
        "device": device_codes(accounts, np.full(len(accounts), CARD_SLOT)),
        "scenario": np.zeros(len(accounts), dtype=np.int8),
    }


def _online_columns(context: Context, accounts: np.ndarray, merchants: np.ndarray, time_us: np.ndarray,
                    amount: np.ndarray, cities: np.ndarray, devices: np.ndarray,
                    payment: np.ndarray | None = None) -> Columns:
    """Online transactions located where the payer's IP address is."""
    population, rng = context.population, context.rng
    channel = np.where(rng.random(len(accounts)) < 0.3, MOBILE_APP, ONLINE).astype(np.int8)
    latitude, longitude = _near(context, cities)
    return {
        "time_us": time_us, "account": accounts, "merchant": merchants, "amount": round_amounts(amount),
        "payment": choose_payment(population, rng, accounts, channel) if payment is None else payment,
        "channel": channel, "country": population.city_country[cities].astype(np.int16),
        "latitude": latitude, "longitude": longitude, "device": devices,
        "scenario": np.zeros(len(accounts), dtype=np.int8),
    }


def card_testing(context: Context, incidents: int) -> Columns:
    """Stolen card numbers checked with tiny purchases at many merchants within minutes, then a big one."""
    rng = context.rng
    victims = _active_accounts(context, incidents)
    sizes = rng.integers(4, 13, incidents) + 1
    incident, position = _incident_rows(sizes)
    last = position == (sizes - 1)[incident]
    gaps = np.where(last, rng.uniform(2, 15, len(incident)) * MICROS_PER_MINUTE,
                    rng.exponential(25.0, len(incident)) * MICROS_PER_SECOND + MICROS_PER_SECOND)
    time_us = _incident_times(_uniform_times(context, incidents, MICROS_PER_HOUR), gaps, incident, position)
    merchants = np.where(last, _online_merchants_of(context, ("electronics", "gift_cards", "jewelry"), len(incident)),
                         _online_merchants_of(context, ("digital_goods", "gift_cards", "entertainment", "clothing"),
                                              len(incident)))
    amount = np.where(last, rng.uniform(250.0, 2500.0, len(incident)), rng.uniform(0.5, 3.0, len(incident)))
    credit = np.full(len(incident), PAYMENT_METHODS.index("credit_card"), dtype=np.int8)
    accounts = victims[incident]
    return _online_columns(context, accounts, merchants, time_us, amount,
                           _fraudster_cities(context, context.population.home_country[victims])[incident],
                           stranger_device_codes(context.population, rng, incidents)[incident], credit)


def account_takeover(context: Context, incidents: int) -> Columns:
    """Stolen credentials used from a new device abroad: a small check, then transfers and big purchases."""
    rng = context.rng
    population = context.population
    victims = _active_accounts(context, incidents)
    sizes = rng.integers(3, 8, incidents)
    incident, position = _incident_rows(sizes)
    gaps = rng.uniform(2, 40, len(incident)) * MICROS_PER_MINUTE
    time_us = _incident_times(_uniform_times(context, incidents, 6 * MICROS_PER_HOUR), gaps, incident, position)
    accounts = victims[incident]
    typical = np.exp(population.amount_log_median[accounts])
    amount = np.where(position == 0, rng.uniform(1.0, 20.0, len(incident)),
                      np.clip(typical * rng.uniform(4.0, 15.0, len(incident)), 200.0, 20_000.0))
    merchants = _online_merchants_of(context, ("money_transfer", "crypto_exchange", "electronics", "gift_cards"),
                                     len(incident))
    method_choices = np.array([PAYMENT_METHODS.index(name) for name in
                               ("bank_transfer", "crypto", "paypal", "credit_card")], dtype=np.int8)
    payment = rng.choice(method_choices, size=len(incident), p=[0.35, 0.2, 0.2, 0.25])
    return _online_columns(context, accounts, merchants, time_us, amount,
                           _fraudster_cities(context, context.population.home_country[victims])[incident],
                           stranger_device_codes(population, rng, incidents)[incident], payment)


def compromised_merchant(context: Context, incidents: int) -> Columns:
    """Cards skimmed at a few shops are cloned and used days later in another city (one incident per card)."""
    population, rng, normal = context.population, context.rng, context.normal
    visits = np.flatnonzero((normal["channel"] == CARD_PRESENT)
                            & (normal["time_us"] < context.end_us - 2 * MICROS_PER_DAY))
    if len(visits) == 0 or incidents == 0:
        return empty_columns()
    # Skim the shops in random order until enough distinct cards went through them.
    visits = visits[np.argsort(normal["time_us"][visits], kind="stable")]
    pairs, first_visit = np.unique(normal["merchant"][visits].astype(np.int64) * population.accounts
                                   + normal["account"][visits], return_index=True)
    shop, card = pairs // population.accounts, pairs % population.accounts
    # A card is only a candidate if its clone can still be used inside the window.
    cashout = normal["time_us"][visits][first_visit] + (
        rng.uniform(2.0, 10.0, len(pairs)) * MICROS_PER_DAY).astype(np.int64)
    usable = cashout < context.end_us - 6 * MICROS_PER_HOUR
    shop, card, cashout = shop[usable], card[usable], cashout[usable]
    if len(shop) == 0:
        return empty_columns()
    shop_order = rng.permutation(np.unique(shop))
    cards_per_shop = np.bincount(shop, minlength=population.merchants)[shop_order]
    skimmed = shop_order[: int(np.searchsorted(np.cumsum(cards_per_shop), incidents)) + 1]
    chosen = rng.permutation(np.flatnonzero(np.isin(shop, skimmed)))[:incidents]
    victims, start, source = card[chosen], cashout[chosen], shop[chosen]
    sizes = rng.integers(1, 5, len(chosen))
    incident, position = _incident_rows(sizes)
    gaps = rng.uniform(5, 90, len(incident)) * MICROS_PER_MINUTE
    time_us = _incident_times(start, gaps, incident, position)
    # One cash-out city per skimmed shop: a fraud ring's city, never the victim's home country.
    ring_city = np.zeros(population.merchants, dtype=np.int64)
    ring_city[skimmed] = _fraudster_cities(context, population.city_country[population.merchant_city[skimmed]])
    cities = ring_city[source][incident]
    accounts = victims[incident]
    merchants = physical_merchant_in(population, rng, cities)
    amount = np.exp(population.amount_log_median[accounts]) * rng.uniform(2.0, 6.0, len(incident)) + 40.0
    return _shop_columns(context, accounts, merchants, time_us, amount)


def impossible_travel(context: Context, incidents: int) -> Columns:
    """A cloned card used in a shop thousands of kilometres away minutes after the real card was used."""
    population, rng, normal = context.population, context.rng, context.normal
    anchors = np.flatnonzero((normal["channel"] == CARD_PRESENT)
                             & (normal["time_us"] < context.end_us - MICROS_PER_HOUR))
    if len(anchors) == 0 or incidents == 0:
        return empty_columns()
    anchors = rng.choice(anchors, size=incidents)
    weights = 0.5 * country_weights(7)[population.city_country] + 0.5 * country_weights(6)[population.city_country]
    candidates = rng.choice(len(weights), size=(incidents, 8), p=weights / weights.sum())
    far = distance_km(normal["latitude"][anchors][:, None], normal["longitude"][anchors][:, None],
                      population.city_latitude[candidates], population.city_longitude[candidates])
    found = (far >= IMPOSSIBLE_DISTANCE_KM).any(axis=1)
    anchors = anchors[found]
    cities = candidates[found, (far[found] >= IMPOSSIBLE_DISTANCE_KM).argmax(axis=1)]
    sizes = rng.integers(1, 4, len(anchors))
    incident, position = _incident_rows(sizes)
    gaps = rng.uniform(5, 30, len(incident)) * MICROS_PER_MINUTE
    start = normal["time_us"][anchors] + (rng.uniform(3, 45, len(anchors)) * MICROS_PER_MINUTE).astype(np.int64)
    accounts = normal["account"][anchors][incident]
    merchants = physical_merchant_in(population, rng, cities[incident])
    amount = profile_amounts(population, rng, accounts, population.merchant_category[merchants]) * rng.uniform(
        1.0, 3.0, len(incident))
    return _shop_columns(context, accounts, merchants, _incident_times(start, gaps, incident, position), amount)


def dormant_spree(context: Context, incidents: int) -> Columns:
    """An account silent for weeks suddenly makes many high-value purchases within hours."""
    population, rng, normal = context.population, context.rng, context.normal
    dormant = np.flatnonzero(population.dormant & (population.opened_us < context.start_us))
    if len(dormant) == 0 or incidents == 0:
        return empty_columns()
    # Candidate (account, moment) pairs; keep those with no transaction in the weeks before.
    span = context.end_us - context.start_us
    quiet_us = int(min(DORMANT_GAP_DAYS * MICROS_PER_DAY, span / 2))
    candidates = rng.choice(dormant, size=incidents * 4)
    moments = context.start_us + quiet_us + (rng.random(len(candidates)) * max(
        1, span - quiet_us - 6 * MICROS_PER_HOUR)).astype(np.int64)
    own = np.isin(normal["account"], dormant)
    seconds = (normal["time_us"][own] - context.start_us) // MICROS_PER_SECOND
    keys = np.sort(normal["account"][own] * (1 << 40) + seconds)
    key = candidates * (1 << 40) + (moments - context.start_us) // MICROS_PER_SECOND
    recent = np.searchsorted(keys, key) - np.searchsorted(keys, key - quiet_us // MICROS_PER_SECOND)
    quiet = np.flatnonzero(recent == 0)
    _, first = np.unique(candidates[quiet], return_index=True)
    chosen = quiet[np.sort(first)][:incidents]
    victims, start = candidates[chosen], moments[chosen]
    sizes = rng.integers(4, 11, len(chosen))
    incident, position = _incident_rows(sizes)
    time_us = _incident_times(start, rng.uniform(4, 40, len(incident)) * MICROS_PER_MINUTE, incident, position)
    accounts = victims[incident]
    amount = np.maximum(150.0, np.exp(population.amount_log_median[accounts]) * rng.uniform(5.0, 20.0, len(incident)))
    home = population.home_city[accounts]
    in_shop = rng.random(len(incident)) < 0.5
    shop = _shop_columns(context, accounts, physical_merchant_in(population, rng, home), time_us, amount)
    online = _online_columns(context, accounts,
                             _online_merchants_of(context, ("electronics", "jewelry", "gift_cards", "travel"),
                                                  len(incident)),
                             time_us, amount, home, device_codes(accounts, np.ones(len(incident), dtype=np.int64)))
    return {name: np.where(in_shop, shop[name], online[name]) for name in shop}


def stealth_spending(context: Context, incidents: int) -> Columns:
    """Amounts that fit the account's own range, on its usual device at home, but a burst of new
    merchants in the middle of the night: only behaviour (velocity, novelty, hour) gives it away."""
    population, rng = context.population, context.rng
    victims = _active_accounts(context, incidents)
    day = (_uniform_times(context, incidents, MICROS_PER_DAY) // MICROS_PER_DAY) * MICROS_PER_DAY
    local_hour = rng.uniform(1.0, 4.0, incidents)
    start = day + ((local_hour - utc_offset_hours(population, population.home_city[victims])) * MICROS_PER_HOUR
                   ).astype(np.int64)
    start = np.clip(start, context.start_us, max(context.start_us, context.end_us - 2 * MICROS_PER_HOUR))
    sizes = rng.integers(6, 15, incidents)
    incident, position = _incident_rows(sizes)
    time_us = _incident_times(start, rng.uniform(1, 8, len(incident)) * MICROS_PER_MINUTE, incident, position)
    accounts = victims[incident]
    merchants = _online_merchants_of(context, ("digital_goods", "clothing", "electronics", "gift_cards",
                                               "entertainment"), len(incident))
    amount = profile_amounts(population, rng, accounts, np.full(len(incident), category_index("grocery")), 0.5)
    return _online_columns(context, accounts, merchants, time_us, amount, population.home_city[accounts],
                           device_codes(accounts, np.ones(len(incident), dtype=np.int64)))


SCENARIOS: dict[str, Scenario] = {
    scenario.name: scenario for scenario in (
        Scenario("card_testing", card_testing, 9.0),
        Scenario("account_takeover", account_takeover, 5.0),
        Scenario("compromised_merchant", compromised_merchant, 2.5),
        Scenario("impossible_travel", impossible_travel, 2.0),
        Scenario("dormant_spree", dormant_spree, 7.0),
        Scenario("stealth_spending", stealth_spending, 10.0),
    )
}
SCENARIO_NAMES = tuple(SCENARIOS)
#: Relative share of each scenario in the fraud (sums to 1).
DEFAULT_SCENARIO_WEIGHTS: dict[str, float] = {
    "card_testing": 0.25, "account_takeover": 0.2, "compromised_merchant": 0.15,
    "impossible_travel": 0.1, "dormant_spree": 0.1, "stealth_spending": 0.2,
}


def inject_fraud(context: Context, fraud_events: int, weights: Mapping[str, float]) -> Columns:
    """About ``fraud_events`` fraudulent transactions split between scenarios by weight."""
    unknown = set(weights) - set(SCENARIOS)
    if unknown:
        raise ValueError(f"unknown scenarios: {', '.join(sorted(unknown))}; known: {', '.join(SCENARIO_NAMES)}")
    total = sum(weight for weight in weights.values() if weight > 0)
    parts: list[Columns] = []
    for code, name in enumerate(SCENARIO_NAMES):
        weight = weights.get(name, 0.0)
        if weight <= 0 or total <= 0:
            continue
        scenario = SCENARIOS[name]
        incidents = int(context.rng.poisson(fraud_events * weight / total / scenario.events_per_incident))
        columns = scenario.generate(context, incidents)
        columns["scenario"] = np.full(len(columns["time_us"]), code, dtype=np.int8)
        parts.append(columns)
    return concat_columns(parts)
