"""Legitimate traffic: each account spends the way its profile says, with seasonality and surprises.

Surprises matter as much as habits: legitimate trips abroad, new phones, one-off big purchases,
VPN users and night owls make every single field overlap between fraud and non-fraud, so a model
has to combine behaviour to separate them.

Transactions are built as ``Columns``: a dict of NumPy arrays with integer codes (account, merchant,
city, payment method, channel, device, scenario). They become strings only once, at the end.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fraudstream.events.contract import CHANNELS, PAYMENT_METHODS
from fraudstream.simulate.population import (
    CARD_SLOT,
    NEW_DEVICE_SLOT,
    PREFERRED_PER_ACCOUNT,
    Population,
    category_amount_factor,
    category_index,
    country_weights,
    device_codes,
    distance_km,
    physical_payment_mask,
    sample_rows,
)
from fraudstream.timeunits import MICROS_PER_DAY, MICROS_PER_HOUR

Columns = dict[str, np.ndarray]
COLUMN_NAMES = ("time_us", "account", "merchant", "amount", "payment", "channel", "country",
                "latitude", "longitude", "device", "scenario")
LEGITIMATE = -1
CARD_PRESENT = CHANNELS.index("card_present")
ONLINE = CHANNELS.index("online")
ATM = CHANNELS.index("atm")
MOBILE_APP = CHANNELS.index("mobile_app")
#: Monday..Sunday traffic factors (Fridays and Saturdays are busiest).
WEEKDAY_FACTOR = np.array([0.93, 0.95, 0.97, 1.0, 1.12, 1.16, 0.87])
PREFERRED_SHARE = 0.78
BIG_PURCHASE_SHARE = 0.004
VPN_SHARE = 0.003
TRIP_EVERY_DAYS = 120.0
NEW_DEVICE_EVERY_DAYS = 150.0
FLIGHT_SPEED_KMH = 700.0
#: Share of an account's transactions at its own active hours (the rest at any hour).
HABITUAL_SHARE = 0.85
#: Accounts per step when rates are computed per account and hour (bounded temporary arrays).
_INTENSITY_BLOCK = 1_048_576


def concat_columns(parts: list[Columns]) -> Columns:
    parts = [part for part in parts if len(part["time_us"])]
    if not parts:
        return empty_columns()
    return {name: np.concatenate([part[name] for part in parts]) for name in COLUMN_NAMES}


def take_columns(columns: Columns, rows: np.ndarray) -> Columns:
    return {name: values[rows] for name, values in columns.items()}


def empty_columns() -> Columns:
    kinds = {"time_us": np.int64, "account": np.int64, "merchant": np.int64, "amount": np.float64,
             "payment": np.int8, "channel": np.int8, "country": np.int16, "latitude": np.float64,
             "longitude": np.float64, "device": np.int64, "scenario": np.int8}
    return {name: np.empty(0, dtype=kinds[name]) for name in COLUMN_NAMES}


def utc_offset_hours(population: Population, cities: np.ndarray) -> np.ndarray:
    """Local time zone of a city, approximated from its longitude."""
    return np.round(population.city_longitude[cities] / 15.0)


def profile_amounts(population: Population, rng: np.random.Generator, accounts: np.ndarray,
                    categories: np.ndarray, spread_factor: float = 1.0) -> np.ndarray:
    """Amounts an account would plausibly spend in these categories (log-normal around its habit)."""
    log_mean = population.amount_log_median[accounts] + np.log(category_amount_factor()[categories])
    return np.exp(rng.normal(log_mean, population.amount_log_spread[accounts] * spread_factor))


def round_amounts(amounts: np.ndarray) -> np.ndarray:
    return np.round(np.clip(amounts, 0.5, 50_000.0), 2)


def choose_payment(population: Population, rng: np.random.Generator, accounts: np.ndarray,
                   channels: np.ndarray) -> np.ndarray:
    """The account's own preference, restricted to what the channel allows (no PayPal at a till)."""
    weights = population.payment_weights[accounts].copy()
    at_terminal = (channels == CARD_PRESENT) | (channels == ATM)
    weights[at_terminal] *= physical_payment_mask()
    weights[channels == ATM] = np.eye(len(PAYMENT_METHODS))[PAYMENT_METHODS.index("debit_card")]
    return sample_rows(rng, weights).astype(np.int8)


def physical_merchant_in(population: Population, rng: np.random.Generator, cities: np.ndarray) -> np.ndarray:
    """A random shop in each given city (every city has at least two)."""
    offsets = (rng.random(len(cities)) * population.city_merchant_count[cities]).astype(np.int64)
    return population.city_merchant_order[population.city_merchant_start[cities] + offsets]


def online_merchant(population: Population, rng: np.random.Generator, count: int) -> np.ndarray:
    """Random online merchants, popular ones more often."""
    weights = population.merchant_popularity[population.online_merchants]
    return population.online_merchants[rng.choice(len(weights), size=count, p=weights / weights.sum())]


def place_transactions(population: Population, rng: np.random.Generator, merchants: np.ndarray,
                       cities: np.ndarray, accounts: np.ndarray) -> tuple[np.ndarray, ...]:
    """Channel, country and coordinates: a shop's own place, or the payer's city for online (IP location)."""
    online = population.merchant_online[merchants]
    mobile = rng.random(len(merchants)) < population.mobile_share[accounts]
    channel = np.where(online, np.where(mobile, MOBILE_APP, ONLINE), CARD_PRESENT).astype(np.int8)
    channel[(~online) & (population.merchant_category[merchants] == category_index("atm_cash"))] = ATM
    latitude = np.where(online, population.city_latitude[cities] + rng.normal(0, 0.03, len(cities)),
                        population.merchant_latitude[merchants])
    longitude = np.where(online, population.city_longitude[cities] + rng.normal(0, 0.04, len(cities)),
                         population.merchant_longitude[merchants])
    country = np.where(online, population.city_country[cities],
                       population.city_country[population.merchant_city[merchants]]).astype(np.int16)
    return channel, country, np.clip(latitude, -89.9, 89.9), np.clip(longitude, -179.9, 179.9)


#: A moment after every simulated one: the start of a trip or purchase that never happens.
NEVER_US = np.iinfo(np.int64).max // 4


@dataclass(frozen=True)
class Surprises:
    """Legitimate departures from habit planned over a window, kept only for the accounts that have
    one (a few percent a week): a dense array per account would not fit for millions of accounts."""

    travellers: np.ndarray
    trip_start_us: np.ndarray
    trip_end_us: np.ndarray
    trip_city: np.ndarray
    flight_us: np.ndarray
    device_buyers: np.ndarray
    new_device_us: np.ndarray

    def trips(self, accounts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Start, end, city and flight time of each account's trip (``NEVER_US`` for stay-at-homes)."""
        rows, found = _lookup(self.travellers, accounts)
        return (np.where(found, self.trip_start_us[rows], NEVER_US), np.where(found, self.trip_end_us[rows], NEVER_US),
                np.where(found, self.trip_city[rows], 0), np.where(found, self.flight_us[rows], 0))

    def new_device(self, accounts: np.ndarray) -> np.ndarray:
        """When each account starts using a newly bought device (``NEVER_US``: it buys none)."""
        rows, found = _lookup(self.device_buyers, accounts)
        return np.where(found, self.new_device_us[rows], NEVER_US)


def _lookup(sorted_keys: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Position of each key in ``sorted_keys`` (clipped to a valid index) and whether it is there."""
    if len(sorted_keys) == 0:
        return np.zeros(len(keys), dtype=np.int64), np.zeros(len(keys), dtype=bool)
    rows = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return rows, sorted_keys[rows] == keys


def plan_surprises(population: Population, rng: np.random.Generator, start_us: int, end_us: int) -> Surprises:
    """Trips (mostly abroad, with a flight long enough to be possible) and newly bought devices."""
    accounts = population.accounts
    span_us = end_us - start_us
    span_days = span_us / MICROS_PER_DAY
    travellers = np.flatnonzero((rng.random(accounts) < 1 - np.exp(-span_days / TRIP_EVERY_DAYS))
                                & ~population.dormant)
    trip_start = start_us + (rng.random(accounts)[travellers] * span_us).astype(np.int64)
    trip_end = trip_start + (rng.uniform(2.0, 12.0, accounts)[travellers] * MICROS_PER_DAY).astype(np.int64)
    home = population.home_city[travellers]
    cities = len(population.city_country)
    holiday = country_weights(6)[population.city_country] * np.tile([0.6, 0.3, 0.1], cities // 3)
    trip_city = rng.choice(cities, size=accounts, p=holiday / holiday.sum())[travellers]
    trip_city = np.where(trip_city == home, (home + 1) % cities, trip_city)
    kilometres = distance_km(population.city_latitude[home], population.city_longitude[home],
                             population.city_latitude[trip_city], population.city_longitude[trip_city])
    flight = ((kilometres / FLIGHT_SPEED_KMH + 2.0) * MICROS_PER_HOUR).astype(np.int64)
    buyers = np.flatnonzero(rng.random(accounts) < 1 - np.exp(-span_days / NEW_DEVICE_EVERY_DAYS))
    new_device = start_us + (rng.random(accounts)[buyers] * span_us).astype(np.int64)
    return Surprises(travellers, trip_start, trip_end, trip_city, flight, buyers, new_device)


def _times_over_days(population: Population, rng: np.random.Generator, block_start_us: int,
                     block_end_us: int) -> tuple[np.ndarray, np.ndarray]:
    """Accounts and times of a block of whole days: weekly seasonality picks the day, the account's
    active hours (local time) pick the hour."""
    span_us = block_end_us - block_start_us
    days = max(1, int(np.ceil(span_us / MICROS_PER_DAY)))
    counts = rng.poisson(population.transactions_per_day * span_us / MICROS_PER_DAY)
    active = np.flatnonzero(counts)
    accounts = np.repeat(active, counts[active])
    size = len(accounts)
    first_day = block_start_us // MICROS_PER_DAY
    day_weights = WEEKDAY_FACTOR[(first_day + np.arange(days) + 3) % 7]
    day = first_day + rng.choice(days, size=size, p=day_weights / day_weights.sum())
    habitual = rng.random(size) < HABITUAL_SHARE
    local_hour = np.where(habitual,
                          rng.normal(population.active_hour_center[accounts], population.active_hour_width[accounts]),
                          rng.uniform(0.0, 24.0, size)) % 24.0
    utc_hour = local_hour - utc_offset_hours(population, population.home_city[accounts])
    time_us = day * MICROS_PER_DAY + (utc_hour * MICROS_PER_HOUR).astype(np.int64)
    return accounts, block_start_us + (time_us - block_start_us) % span_us


def _times_within_a_day(population: Population, rng: np.random.Generator, block_start_us: int,
                        block_end_us: int) -> tuple[np.ndarray, np.ndarray]:
    """Accounts and times of a block shorter than a day (a big population's window), hour by hour:
    each account's count follows its rate at that hour (its active hours in local time, the weekday),
    the same intensity ``_times_over_days`` draws from, and times are uniform inside the hour."""
    offset_of_city = utc_offset_hours(population, np.arange(len(population.city_country)))
    accounts_parts: list[np.ndarray] = []
    times_parts: list[np.ndarray] = []
    for step_start in range(block_start_us, block_end_us, MICROS_PER_HOUR):
        step_us = min(block_end_us, step_start + MICROS_PER_HOUR) - step_start
        middle = step_start + step_us // 2
        weekday = WEEKDAY_FACTOR[(middle // MICROS_PER_DAY + 3) % 7]
        utc_hour = (middle % MICROS_PER_DAY) / MICROS_PER_HOUR
        for first in range(0, population.accounts, _INTENSITY_BLOCK):
            block = slice(first, first + _INTENSITY_BLOCK)
            width = population.active_hour_width[block].astype(np.float64)
            local = utc_hour + offset_of_city[population.home_city[block]]
            distance = (local - population.active_hour_center[block] + 12.0) % 24.0 - 12.0
            habit = np.exp(-0.5 * (distance / width) ** 2) / (width * np.sqrt(2 * np.pi))
            per_hour = HABITUAL_SHARE * habit + (1 - HABITUAL_SHARE) / 24.0
            expected = population.transactions_per_day[block] * weekday * per_hour * (step_us / MICROS_PER_HOUR)
            counts = rng.poisson(expected)
            active = np.flatnonzero(counts)
            accounts = first + np.repeat(active, counts[active])
            accounts_parts.append(accounts)
            times_parts.append(step_start + (rng.random(len(accounts)) * step_us).astype(np.int64))
    return np.concatenate(accounts_parts), np.concatenate(times_parts)


def normal_traffic(population: Population, surprises: Surprises, rng: np.random.Generator,
                   block_start_us: int, block_end_us: int) -> Columns:
    """Legitimate transactions of every account in [block_start_us, block_end_us), unsorted."""
    span_us = block_end_us - block_start_us
    if span_us < MICROS_PER_DAY:
        accounts, time_us = _times_within_a_day(population, rng, block_start_us, block_end_us)
    else:
        accounts, time_us = _times_over_days(population, rng, block_start_us, block_end_us)

    # Drop what cannot happen: before the account existed, or while its owner is on a plane.
    trip_start, trip_end, trip_city, flight = surprises.trips(accounts)
    flying = ((time_us >= trip_start - flight) & (time_us < trip_start)) | (
        (time_us >= trip_end) & (time_us < trip_end + flight))
    keep = (time_us >= population.opened_us[accounts]) & ~flying
    accounts, time_us = accounts[keep], time_us[keep]
    trip_start, trip_end, trip_city = trip_start[keep], trip_end[keep], trip_city[keep]
    size = len(accounts)
    travelling = (time_us >= trip_start) & (time_us < trip_end)
    city = np.where(travelling, trip_city, population.home_city[accounts])

    # Where: regular merchants at home, otherwise a shop in the current city or an online merchant.
    rank_weights = 1.0 / np.arange(1, PREFERRED_PER_ACCOUNT + 1)
    slot = rng.choice(PREFERRED_PER_ACCOUNT, size=size, p=rank_weights / rank_weights.sum())
    roll = rng.random(size)
    merchant = np.where(roll < 0.6, physical_merchant_in(population, rng, city),
                        online_merchant(population, rng, size))
    regular = (rng.random(size) < PREFERRED_SHARE) & ~travelling
    merchant = np.where(regular, population.preferred_merchants[accounts, slot], merchant)
    channel, country, latitude, longitude = place_transactions(population, rng, merchant, city, accounts)
    vpn = (rng.random(size) < VPN_SHARE) & (channel != CARD_PRESENT) & (channel != ATM)
    if vpn.any():
        elsewhere = rng.integers(0, len(population.city_country), vpn.sum())
        latitude[vpn] = population.city_latitude[elsewhere]
        longitude[vpn] = population.city_longitude[elsewhere]
        country[vpn] = population.city_country[elsewhere]

    # How much: the account's habit scaled by the category, with rare big one-off purchases.
    category = population.merchant_category[merchant]
    amount = profile_amounts(population, rng, accounts, category)
    big = rng.random(size) < BIG_PURCHASE_SHARE
    amount[big] *= rng.uniform(4.0, 12.0, big.sum())
    amount = np.where(channel == ATM, np.maximum(20.0, np.round(amount / 20.0) * 20.0), amount)

    # With what: the card at a terminal, one of the account's phones/computers online.
    online_slot = 1 + (rng.random(size) * population.device_count[accounts]).astype(np.int64)
    new_device = (time_us >= surprises.new_device(accounts)) & (rng.random(size) < 0.6)
    online_slot = np.where(new_device, NEW_DEVICE_SLOT, online_slot)
    at_terminal = (channel == CARD_PRESENT) | (channel == ATM)
    device = device_codes(accounts, np.where(at_terminal, CARD_SLOT, online_slot))
    return {
        "time_us": time_us, "account": accounts, "merchant": merchant, "amount": round_amounts(amount),
        "payment": choose_payment(population, rng, accounts, channel), "channel": channel, "country": country,
        "latitude": latitude, "longitude": longitude, "device": device,
        "scenario": np.full(size, LEGITIMATE, dtype=np.int8),
    }
