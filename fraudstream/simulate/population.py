"""The simulated world: countries with cities, merchants, and accounts with their own spending habits.

Everything is a NumPy array indexed by account or merchant number so that traffic generation can
gather profile values for millions of transactions at once. The same seed always builds the same
world. Account arrays use the narrowest type that holds their values exactly and account ids are
made only for the accounts an event names, so a population of ten million accounts fits in memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fraudstream.events.contract import PAYMENT_METHODS
from fraudstream.timeunits import MICROS_PER_DAY

#: code, currency, latitude, longitude, spread of cities (degrees), weight as a home country,
#: weight as a holiday destination, weight as a fraudster's location.
COUNTRIES: tuple[tuple[str, str, float, float, float, float, float, float], ...] = (
    ("US", "USD", 39.8, -98.6, 8.0, 0.30, 0.10, 0.05),
    ("GB", "GBP", 52.5, -1.5, 1.5, 0.14, 0.06, 0.03),
    ("DE", "EUR", 51.2, 10.4, 1.8, 0.14, 0.05, 0.02),
    ("FR", "EUR", 46.6, 2.4, 2.0, 0.12, 0.10, 0.02),
    ("ES", "EUR", 40.4, -3.7, 2.0, 0.08, 0.12, 0.01),
    ("IT", "EUR", 42.8, 12.5, 2.0, 0.07, 0.10, 0.01),
    ("NL", "EUR", 52.2, 5.3, 0.5, 0.05, 0.04, 0.01),
    ("IE", "EUR", 53.3, -7.7, 0.7, 0.03, 0.03, 0.0),
    ("CA", "CAD", 50.0, -96.0, 6.0, 0.04, 0.04, 0.01),
    ("AU", "AUD", -30.0, 140.0, 5.0, 0.03, 0.03, 0.01),
    ("MX", "MXN", 23.6, -102.5, 3.0, 0.0, 0.06, 0.03),
    ("BR", "BRL", -14.2, -51.9, 5.0, 0.0, 0.03, 0.10),
    ("JP", "JPY", 36.2, 138.3, 2.0, 0.0, 0.04, 0.01),
    ("CN", "CNY", 33.0, 110.0, 6.0, 0.0, 0.02, 0.10),
    ("IN", "INR", 21.0, 78.0, 5.0, 0.0, 0.02, 0.08),
    ("TH", "THB", 15.9, 100.9, 2.0, 0.0, 0.06, 0.02),
    ("NG", "NGN", 9.1, 8.7, 2.5, 0.0, 0.01, 0.14),
    ("RU", "RUB", 55.8, 37.6, 4.0, 0.0, 0.01, 0.14),
    ("RO", "RON", 45.9, 25.0, 1.5, 0.0, 0.02, 0.08),
    ("UA", "UAH", 49.0, 31.0, 2.5, 0.0, 0.01, 0.08),
    ("VN", "VND", 14.0, 108.0, 3.0, 0.0, 0.02, 0.04),
    ("AE", "AED", 24.0, 54.0, 0.8, 0.0, 0.03, 0.02),
)
CITIES_PER_COUNTRY = 3
MIN_MERCHANTS = 200

#: Merchant categories: name, share of merchants, share of them that sell online only, amount factor
#: relative to the account's typical amount.
CATEGORIES: tuple[tuple[str, float, float, float], ...] = (
    ("grocery", 0.20, 0.10, 1.0),
    ("restaurant", 0.16, 0.05, 0.8),
    ("fuel", 0.07, 0.0, 1.1),
    ("pharmacy", 0.05, 0.15, 0.6),
    ("clothing", 0.08, 0.40, 1.6),
    ("electronics", 0.05, 0.55, 3.0),
    ("travel", 0.03, 0.80, 6.0),
    ("hotel", 0.03, 0.30, 4.5),
    ("entertainment", 0.06, 0.40, 0.7),
    ("atm_cash", 0.05, 0.0, 2.0),
    ("digital_goods", 0.06, 1.0, 0.3),
    ("gift_cards", 0.03, 0.70, 1.2),
    ("crypto_exchange", 0.02, 1.0, 4.0),
    ("money_transfer", 0.02, 1.0, 3.0),
    ("utilities", 0.05, 0.90, 1.5),
    ("jewelry", 0.02, 0.30, 5.0),
    ("home_improvement", 0.02, 0.20, 2.5),
)

#: Devices per account: slot 0 is the physical card (what card-present and ATM transactions carry),
#: slots 1..3 are phones and computers for online payments, slot 4 is a device bought during the
#: simulated period (a legitimate "new device" surprise).
CARD_SLOT = 0
NEW_DEVICE_SLOT = 4
DEVICE_SLOTS = 5

#: Regular merchants per account (shops near home and favourite online stores).
PREFERRED_PER_ACCOUNT = 10
#: Up to this many accounts, habits are kept as float64; beyond, as float32 (7 significant digits,
#: half the memory), so that ten million accounts fit in a producer's memory.
EXACT_HABITS_UP_TO = 2_000_000
#: Accounts drawn per block where a draw per account would need large temporary arrays.
_BUILD_BLOCK = 262_144
#: Payment methods a terminal accepts (online accepts all).
_PHYSICAL_METHODS = {"credit_card", "debit_card", "mobile_wallet"}


@dataclass(frozen=True)
class Population:
    """Accounts, merchants and cities as parallel arrays (index = account / merchant / city number)."""

    seed: int
    # cities
    city_country: np.ndarray
    city_latitude: np.ndarray
    city_longitude: np.ndarray
    # merchants
    merchant_ids: np.ndarray
    merchant_category: np.ndarray
    merchant_online: np.ndarray
    merchant_city: np.ndarray
    merchant_latitude: np.ndarray
    merchant_longitude: np.ndarray
    merchant_popularity: np.ndarray
    city_merchant_order: np.ndarray
    city_merchant_start: np.ndarray
    city_merchant_count: np.ndarray
    online_merchants: np.ndarray
    # accounts
    home_city: np.ndarray
    home_country: np.ndarray
    amount_log_median: np.ndarray
    amount_log_spread: np.ndarray
    transactions_per_day: np.ndarray
    active_hour_center: np.ndarray
    active_hour_width: np.ndarray
    mobile_share: np.ndarray
    payment_weights: np.ndarray
    device_count: np.ndarray
    opened_us: np.ndarray
    dormant: np.ndarray
    preferred_merchants: np.ndarray

    @property
    def accounts(self) -> int:
        return len(self.home_city)

    @property
    def merchants(self) -> int:
        return len(self.merchant_ids)

    def account_ids(self, accounts: np.ndarray) -> pa.Array:
        """The ids (``acct-000042``) of these account numbers, built only for them."""
        return labelled_ids_of("acct-", accounts, width=max(6, len(str(self.accounts - 1))))

    def nbytes(self) -> int:
        """Memory held by the population's arrays."""
        return sum(value.nbytes for value in vars(self).values() if isinstance(value, np.ndarray))


def country_codes() -> np.ndarray:
    return np.array([row[0] for row in COUNTRIES], dtype=object)


def currencies() -> np.ndarray:
    return np.array([row[1] for row in COUNTRIES], dtype=object)


def category_names() -> np.ndarray:
    return np.array([row[0] for row in CATEGORIES], dtype=object)


def category_index(name: str) -> int:
    return next(position for position, row in enumerate(CATEGORIES) if row[0] == name)


def category_amount_factor() -> np.ndarray:
    return np.array([row[3] for row in CATEGORIES])


def country_weights(column: int) -> np.ndarray:
    """Normalised weights from one column of COUNTRIES (5: home, 6: holiday, 7: fraudster)."""
    weights = np.array([row[column] for row in COUNTRIES])
    return weights / weights.sum()


def physical_payment_mask() -> np.ndarray:
    return np.array([method in _PHYSICAL_METHODS for method in PAYMENT_METHODS])


def distance_km(latitude_a: np.ndarray, longitude_a: np.ndarray,
                latitude_b: np.ndarray, longitude_b: np.ndarray) -> np.ndarray:
    """Great-circle distance (haversine), vectorised."""
    lat_a, lon_a, lat_b, lon_b = (np.radians(value) for value in (latitude_a, longitude_a, latitude_b, longitude_b))
    half = np.sin((lat_b - lat_a) / 2) ** 2 + np.cos(lat_a) * np.cos(lat_b) * np.sin((lon_b - lon_a) / 2) ** 2
    return 2 * 6371.0 * np.arcsin(np.sqrt(np.clip(half, 0.0, 1.0)))


def labelled_ids(prefix: str, count: int, width: int = 6, first: int = 0) -> pa.Array:
    """Zero-padded identifiers like ``acct-000042``, built in Arrow without a Python loop."""
    width = max(width, len(str(max(first + count - 1, 0))))
    return labelled_ids_of(prefix, np.arange(first, first + count, dtype=np.int64), width)


def labelled_ids_of(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    """``prefix`` + each number zero-padded to ``width`` digits."""
    digits = pc.utf8_lpad(pa.array(np.asarray(numbers, dtype=np.int64)).cast(pa.string()), width, "0")
    return pc.binary_join_element_wise(prefix, digits, "")


def narrowest_int(values: np.ndarray) -> np.ndarray:
    """The same integers in the smallest signed type that holds them (memory for big populations)."""
    for kind in (np.int8, np.int16, np.int32):
        if len(values) == 0 or (values.min() >= np.iinfo(kind).min and values.max() <= np.iinfo(kind).max):
            return values.astype(kind)
    return values.astype(np.int64)


def sample_rows(rng: np.random.Generator, weights: np.ndarray) -> np.ndarray:
    """One category per row of a (rows x categories) weight matrix, vectorised."""
    cumulative = np.cumsum(weights, axis=1)
    draws = rng.random(len(weights)) * cumulative[:, -1]
    return np.minimum((draws[:, None] > cumulative).sum(axis=1), weights.shape[1] - 1)


def _cities(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    country = np.repeat(np.arange(len(COUNTRIES)), CITIES_PER_COUNTRY)
    center = np.array([(row[2], row[3], row[4]) for row in COUNTRIES])[country]
    latitude = np.clip(center[:, 0] + rng.normal(0, 1, len(country)) * center[:, 2], -60, 70)
    longitude = np.clip(center[:, 1] + rng.normal(0, 1, len(country)) * center[:, 2], -179, 179)
    return country, latitude, longitude


def _city_weights(city_country: np.ndarray, column: int) -> np.ndarray:
    """City weights from country weights; the first city of each country is the largest."""
    size = np.tile(np.array([0.55, 0.3, 0.15]), len(COUNTRIES))
    weights = country_weights(column)[city_country] * size
    return weights / weights.sum()


def build_population(seed: int, accounts: int = 10_000, merchants: int = 2_000,
                     start_us: int = 0) -> Population:
    """A deterministic world for ``seed``; accounts opened before ``start_us`` unless recently joined."""
    if accounts < 10 or merchants < MIN_MERCHANTS:
        raise ValueError(f"need at least 10 accounts and {MIN_MERCHANTS} merchants (two shops per city, some online)")
    rng = np.random.default_rng([seed, 1])
    city_country, city_latitude, city_longitude = _cities(rng)
    cities = len(city_country)

    # Merchants: every city gets at least two shops; the rest follow where people live and travel.
    category_share = np.array([row[1] for row in CATEGORIES])
    online_share = np.array([row[2] for row in CATEGORIES])
    merchant_category = rng.choice(len(CATEGORIES), size=merchants, p=category_share / category_share.sum())
    merchant_online = rng.random(merchants) < online_share[merchant_category]
    city_weights = 0.7 * _city_weights(city_country, 5) + 0.3 * _city_weights(city_country, 6)
    merchant_city = rng.choice(cities, size=merchants, p=city_weights)
    merchant_city[: 2 * cities] = np.repeat(np.arange(cities), 2)
    merchant_online[: 2 * cities] = False
    merchant_category[: 2 * cities] = np.where(merchant_category[: 2 * cities] == category_index("atm_cash"),
                                               category_index("grocery"), merchant_category[: 2 * cities])
    merchant_category[merchant_online & (merchant_category == category_index("atm_cash"))] = category_index(
        "digital_goods")
    merchant_latitude = np.clip(city_latitude[merchant_city] + rng.normal(0, 0.04, merchants), -89, 89)
    merchant_longitude = np.clip(city_longitude[merchant_city] + rng.normal(0, 0.06, merchants), -179.9, 179.9)
    merchant_popularity = rng.pareto(1.5, merchants) + 0.2

    physical = np.flatnonzero(~merchant_online)
    city_merchant_order = physical[np.argsort(merchant_city[physical], kind="stable")]
    city_merchant_count = np.bincount(merchant_city[physical], minlength=cities)
    city_merchant_start = np.concatenate([[0], np.cumsum(city_merchant_count)[:-1]])
    online_merchants = np.flatnonzero(merchant_online)

    # Accounts: habits drawn from wide distributions so that "normal" covers a lot of ground.
    habit = np.float64 if accounts <= EXACT_HABITS_UP_TO else np.float32
    home_city = narrowest_int(rng.choice(cities, size=accounts, p=_city_weights(city_country, 5)))
    amount_log_median = rng.normal(np.log(38.0), 0.6, accounts).astype(habit, copy=False)
    amount_log_spread = rng.uniform(0.35, 1.0, accounts).astype(habit, copy=False)
    dormant = rng.random(accounts) < 0.05
    transactions_per_day = np.where(dormant, rng.uniform(0.01, 0.04, accounts),
                                    rng.lognormal(np.log(1.6), 0.6, accounts)).astype(habit, copy=False)
    active_hour_center = rng.normal(14.5, 3.0, accounts).astype(habit, copy=False)
    active_hour_width = rng.uniform(2.0, 5.0, accounts).astype(habit, copy=False)
    mobile_share = rng.beta(2, 2, accounts).astype(habit, copy=False)
    payment_weights = np.empty((accounts, len(PAYMENT_METHODS)), dtype=habit)
    for begin in range(0, accounts, _BUILD_BLOCK):
        size = min(_BUILD_BLOCK, accounts - begin)
        payment_weights[begin:begin + size] = rng.dirichlet(np.array([3.0, 3.0, 0.6, 1.0, 0.08, 1.2]), size)
    device_count = narrowest_int(rng.integers(1, 4, accounts))
    age_days = rng.exponential(900.0, accounts) + 30.0
    joined_recently = rng.random(accounts) < 0.03
    age_days[joined_recently] = -rng.uniform(0, 20, joined_recently.sum())
    opened_us = start_us - (age_days * MICROS_PER_DAY).astype(np.int64)

    preferred = _preferred_merchants(rng, home_city, city_merchant_order, city_merchant_start,
                                     city_merchant_count, online_merchants, merchant_popularity)
    return Population(
        seed=seed,
        city_country=city_country, city_latitude=city_latitude, city_longitude=city_longitude,
        merchant_ids=labelled_ids("merch-", merchants).to_numpy(zero_copy_only=False),
        merchant_category=merchant_category,
        merchant_online=merchant_online, merchant_city=merchant_city, merchant_latitude=merchant_latitude,
        merchant_longitude=merchant_longitude, merchant_popularity=merchant_popularity,
        city_merchant_order=city_merchant_order, city_merchant_start=city_merchant_start,
        city_merchant_count=city_merchant_count, online_merchants=online_merchants,
        home_city=home_city, home_country=narrowest_int(city_country[home_city]),
        amount_log_median=amount_log_median, amount_log_spread=amount_log_spread,
        transactions_per_day=transactions_per_day, active_hour_center=active_hour_center,
        active_hour_width=active_hour_width, mobile_share=mobile_share, payment_weights=payment_weights,
        device_count=device_count, opened_us=opened_us, dormant=dormant, preferred_merchants=preferred,
    )


def _preferred_merchants(rng: np.random.Generator, home_city: np.ndarray, city_merchant_order: np.ndarray,
                         city_merchant_start: np.ndarray, city_merchant_count: np.ndarray,
                         online_merchants: np.ndarray, popularity: np.ndarray) -> np.ndarray:
    """Ten regular merchants per account: seven shops in the home city, three online, by popularity.

    Drawn in blocks of accounts (the draws follow one another exactly as in a single draw), so the
    temporary arrays stay small for millions of accounts."""
    accounts = len(home_city)
    local = 7
    preferred = np.empty((accounts, PREFERRED_PER_ACCOUNT),
                         dtype=narrowest_int(np.array([0, len(popularity) - 1])).dtype)
    for begin in range(0, accounts, _BUILD_BLOCK):
        homes = home_city[begin:begin + _BUILD_BLOCK]
        count = city_merchant_count[homes]
        shop_popularity_draw = rng.random((len(homes), local * 3))
        # Popular shops are picked more often: the best of three uniform draws per slot.
        positions = (shop_popularity_draw * count[:, None]).astype(np.int64)
        candidates = city_merchant_order[city_merchant_start[homes][:, None] + positions]
        candidates = candidates.reshape(len(homes), local, 3)
        preferred[begin:begin + len(homes), :local] = np.take_along_axis(
            candidates, popularity[candidates].argmax(axis=2)[..., None], axis=2)[..., 0]
    online_weights = popularity[online_merchants] / popularity[online_merchants].sum()
    for begin in range(0, accounts, _BUILD_BLOCK):
        size = min(_BUILD_BLOCK, accounts - begin)
        preferred[begin:begin + size, local:] = online_merchants[rng.choice(
            len(online_merchants), size=(size, PREFERRED_PER_ACCOUNT - local), p=online_weights)]
    return preferred


def device_codes(accounts: np.ndarray, slots: np.ndarray) -> np.ndarray:
    """Device number of an account's device slot (card, phones, new device)."""
    return accounts.astype(np.int64) * DEVICE_SLOTS + slots


def stranger_device_codes(population: Population, rng: np.random.Generator, count: int) -> np.ndarray:
    """Device numbers that belong to no account (a fraudster's phone or laptop)."""
    base = population.accounts * DEVICE_SLOTS
    return base + rng.integers(0, 1 << 30, count)


def device_ids(population: Population, codes: np.ndarray) -> pa.Array:
    """Opaque device identifiers: a bijective scramble so ids reveal neither owner nor fraud.

    A dictionary array over the distinct devices: each id string is built once, not once per row."""
    distinct, positions = np.unique(codes, return_inverse=True)
    scrambled = (distinct.astype(np.uint64) * np.uint64(0x9E3779B1) + np.uint64(population.seed * 7919 + 1)) % (
        np.uint64(1) << np.uint64(40))
    text = pc.binary_join_element_wise("dev-", pa.array(scrambled.astype(np.int64)).cast(pa.string()), "")
    return pa.DictionaryArray.from_arrays(pa.array(positions.astype(np.int32)), text)
