"""FeatureState: account and merchant features together, with snapshot/restore and eviction."""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields

import numpy as np
import orjson
import pandas as pd

from fraudstream.features import columnar as col
from fraudstream.features.account import AccountFeatures
from fraudstream.features.config import FEATURE_CODE_VERSION, FeatureConfig, feature_names
from fraudstream.features.exceptions import MissingColumnsError, StateFormatError
from fraudstream.features.merchant import TABLES, MerchantFeatures
from fraudstream.features.store import NO_TIME, KeyedStore
from fraudstream.timeunits import MICROS_PER_HOUR, MICROS_PER_SECOND

REQUIRED_COLUMNS = (
    "transaction_id",
    "event_time_us",
    "account_id",
    "amount",
    "merchant_id",
    "payment_method",
    "channel",
    "country",
    "latitude",
    "longitude",
    "device_id",
)
#: 2: merchants have a ``seen`` table (folded legitimate labels kept for deduplication).
SNAPSHOT_FORMAT = 2
#: Older formats restore() still reads: format 1 kept every label in the labels table, which the next
#: event batch of each merchant folds as this code does, so an empty seen table is exact.
READABLE_SNAPSHOT_FORMATS = (1, SNAPSHOT_FORMAT)
#: Idle keys are swept at most once per hour of event time (expiry itself is exact: see store.expire).
SWEEP_INTERVAL_US = MICROS_PER_HOUR


@dataclass(frozen=True)
class StateStats:
    """What the state holds, for logs and metrics."""

    accounts: int
    merchants: int
    account_bytes: int
    merchant_bytes: int
    late_events: int
    evicted_accounts: int
    evicted_merchants: int

    @classmethod
    def total(cls, parts: Iterable[StateStats]) -> StateStats:
        """Sum over several states (one per partition; a merchant counts once per partition)."""
        parts = list(parts)
        return cls(*(sum(getattr(part, field.name) for part in parts) for field in fields(cls)))

    @property
    def bytes_per_account(self) -> float:
        return self.account_bytes / self.accounts if self.accounts else 0.0


#: The clock stands at the CLOCK_QUORUM-th latest event time seen, not the latest: no single event (nor two)
#: from a producer with a wrong clock can move it, so none can make a sweep evict every key as idle or
#: schedule the next sweep decades ahead. Genuine traffic moves it as before (the third latest of a
#: stream's events trails the latest by a few events).
CLOCK_QUORUM = 3


@dataclass
class EventClock:
    """Where one state stands in event time, when it sweeps next, and its counters (all in its snapshot)."""

    now_us: int = NO_TIME
    next_sweep_us: int = NO_TIME
    late_events: int = 0
    evicted_accounts: int = 0
    evicted_merchants: int = 0
    #: The CLOCK_QUORUM latest event times seen, ascending (fewer until that many events were seen).
    latest_us: tuple[int, ...] = ()

    def advance(self, event_time_us: np.ndarray, late: np.ndarray) -> bool:
        """Take in a processed batch's event times and late flags; True when a sweep is due."""
        count = min(CLOCK_QUORUM, len(event_time_us))
        batch_latest = np.partition(event_time_us, len(event_time_us) - count)[len(event_time_us) - count:]
        self.latest_us = tuple(sorted([*self.latest_us, *batch_latest.tolist()])[-CLOCK_QUORUM:])
        if len(self.latest_us) == CLOCK_QUORUM:
            self.now_us = max(self.now_us, self.latest_us[0])
        self.late_events += int(late.sum())
        return self.now_us > NO_TIME and self.now_us >= self.next_sweep_us

    def sweep(self, config: FeatureConfig, accounts: KeyedStore, merchants: KeyedStore,
              slots: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Evict the keys idle past their TTL at this clock (among ``slots`` (accounts, merchants) if given);
        returns the evicted (account, merchant) slots."""
        account_slots, merchant_slots = slots or (None, None)
        evicted = (accounts.evict_idle(self.now_us, config.account_ttl_s * MICROS_PER_SECOND, account_slots),
                   merchants.evict_idle(self.now_us, config.merchant_ttl_s * MICROS_PER_SECOND, merchant_slots))
        self.evicted_accounts += evicted[0].size
        self.evicted_merchants += evicted[1].size
        self.next_sweep_us = self.now_us + SWEEP_INTERVAL_US
        return evicted

    def to_meta(self) -> dict[str, object]:
        return {"clock_us": self.now_us, "next_sweep_us": self.next_sweep_us, "late_events": self.late_events,
                "evicted": [self.evicted_accounts, self.evicted_merchants], "clock_latest_us": list(self.latest_us)}

    @classmethod
    def from_meta(cls, meta: dict) -> EventClock:
        evicted_accounts, evicted_merchants = meta["evicted"]
        # snapshots taken before the quorum clock hold only the clock
        latest = meta.get("clock_latest_us", [meta["clock_us"]] * CLOCK_QUORUM if meta["clock_us"] > NO_TIME else [])
        return cls(meta["clock_us"], meta["next_sweep_us"], meta["late_events"], evicted_accounts, evicted_merchants,
                   tuple(latest))


@dataclass(frozen=True)
class FeatureRows:
    """A batch's features as arrays, from the core to scoring and storage: the (rows, names) matrix and
    is_late. Engines pass these instead of a DataFrame, whose construction, row filter and column
    lookups are a real share of the engine's CPU per micro-batch."""

    matrix: np.ndarray
    names: tuple[str, ...]
    is_late: np.ndarray

    def __len__(self) -> int:
        return len(self.is_late)

    def rows(self, selected: np.ndarray) -> FeatureRows:
        return FeatureRows(self.matrix[selected], self.names, self.is_late[selected])

    def columns(self, names: Sequence[str]) -> np.ndarray:
        """The values of ``names``, in that order, as a (rows, names) matrix; KeyError names a missing one."""
        position = {name: number for number, name in enumerate(self.names)}
        missing = [name for name in names if name not in position]
        if missing:
            raise KeyError(f"feature columns missing: {', '.join(missing[:5])}")
        return self.matrix[:, [position[name] for name in names]]


def feature_matrix(accounts: AccountFeatures, merchants: MerchantFeatures, account_batch: col.Columns,
                   merchant_batch: col.Columns) -> tuple[np.ndarray, np.ndarray]:
    """The (rows, feature_names) matrix and is_late of a batch, updating both parts' state. The merchant part
    may see other keys than the account part (a partitioned state qualifies merchant ids, not the values
    the account novelty features hash)."""
    account = accounts.columns(account_batch)
    merchant = merchants.columns(merchant_batch)
    return np.column_stack([*(account[name] for name in accounts.names), *merchant.values()]), account["is_late"]


def encode_snapshot(config: FeatureConfig, clock: EventClock, arrays: dict[str, np.ndarray]) -> bytes:
    """A snapshot: an .npz archive of plain arrays (the stores' to_arrays) and its metadata."""
    meta = {"format": SNAPSHOT_FORMAT, "feature_code_version": FEATURE_CODE_VERSION, "config": config.to_dict(),
            **clock.to_meta()}
    buffer = io.BytesIO()
    np.savez(buffer, meta=np.frombuffer(orjson.dumps(meta), dtype=np.uint8), **arrays)
    return buffer.getvalue()


def migrate_format_1(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A format-1 snapshot's arrays as format 2: no merchant has a seen table yet."""
    merchants = len(arrays.get("merchant.keys", ()))
    return {**arrays, "merchant.seen": np.zeros((0, TABLES["seen"]), dtype=np.int64),
            "merchant.seen.lengths": np.zeros(merchants, dtype=np.int64)}


class FeatureState:
    """All feature state of one engine instance (or of a training replay)."""

    def __init__(self, config: FeatureConfig | None = None) -> None:
        self.config = config or FeatureConfig()
        self.feature_names = feature_names(self.config)
        self._names = pd.Index(self.feature_names)  # built once, not per batch
        self.accounts = AccountFeatures(self.config)
        self.merchants = MerchantFeatures(self.config)
        self.clock = EventClock()

    def process(self, batch: pd.DataFrame) -> pd.DataFrame:
        """Feature rows (FEATURE_NAMES + is_late) for the batch, same index and order; updates state."""
        rows = self.process_rows(batch)
        frame = pd.DataFrame(rows.matrix, index=batch.index, columns=self._names, copy=False)
        frame["is_late"] = rows.is_late
        return frame

    def process_rows(self, batch: pd.DataFrame) -> FeatureRows:
        """process() as FeatureRows, what scoring and storage take (no DataFrame of features)."""
        missing = [name for name in REQUIRED_COLUMNS if name not in batch.columns]
        if missing:
            raise MissingColumnsError(f"batch lacks columns: {', '.join(missing)}")
        matrix, late = self.process_columns(col.batch_columns(batch, REQUIRED_COLUMNS))
        return FeatureRows(matrix, self.feature_names, late)

    def process_columns(self, batch: col.Columns) -> tuple[np.ndarray, np.ndarray]:
        """process() over arrays (col.batch_columns of REQUIRED_COLUMNS): the (rows, feature_names)
        float matrix and is_late, in the batch's order. No DataFrame per call, which costs more than
        the features of a small batch."""
        if len(batch["event_time_us"]) == 0:
            return np.zeros((0, len(self.feature_names))), np.zeros(0, dtype=bool)
        matrix, late = feature_matrix(self.accounts, self.merchants, batch, batch)
        if self.clock.advance(batch["event_time_us"], late):
            self.clock.sweep(self.config, self.accounts.store, self.merchants.store)
        return matrix, late

    def apply_labels(self, labels: pd.DataFrame) -> None:
        """Label feedback; each label affects only transactions at or after its labeled_at."""
        self.merchants.apply_labels(labels)

    def stats(self) -> StateStats:
        return StateStats(
            accounts=len(self.accounts.store),
            merchants=len(self.merchants.store),
            account_bytes=self.accounts.store.nbytes(),
            merchant_bytes=self.merchants.store.nbytes(),
            late_events=self.clock.late_events,
            evicted_accounts=self.clock.evicted_accounts,
            evicted_merchants=self.clock.evicted_merchants,
        )

    def bytes_per_account(self) -> float:
        """State bytes per live account (scalars + retained history + remembered values)."""
        return self.stats().bytes_per_account

    def snapshot(self) -> bytes:
        """The whole state as an .npz archive of plain arrays (loaded with allow_pickle=False)."""
        arrays = {**self.accounts.store.to_arrays("account"), **self.merchants.store.to_arrays("merchant")}
        return encode_snapshot(self.config, self.clock, arrays)

    @classmethod
    def restore(cls, blob: bytes) -> FeatureState:
        """Inverse of snapshot(); refuses snapshots of another format or feature-code version."""
        try:
            with np.load(io.BytesIO(blob), allow_pickle=False) as archive:
                arrays = {name: archive[name] for name in archive.files}
            meta = orjson.loads(arrays.pop("meta").tobytes())
        except (ValueError, OSError, KeyError) as error:
            raise StateFormatError(f"not a feature-state snapshot: {error}") from None
        if (meta.get("format") not in READABLE_SNAPSHOT_FORMATS
                or meta.get("feature_code_version") != FEATURE_CODE_VERSION):
            raise StateFormatError(
                f"snapshot format {meta.get('format')} / feature code {meta.get('feature_code_version')} "
                f"does not match this code (format {' or '.join(map(str, READABLE_SNAPSHOT_FORMATS))} / "
                f"feature code {FEATURE_CODE_VERSION})"
            )
        if meta["format"] == 1:
            arrays = migrate_format_1(arrays)
        state = cls(FeatureConfig.from_dict(meta["config"]))
        state.accounts.store.load_arrays("account", arrays)
        state.merchants.store.load_arrays("merchant", arrays)
        state.clock = EventClock.from_meta(meta)
        return state
