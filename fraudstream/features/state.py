"""FeatureState: account and merchant features together, with snapshot/restore and eviction."""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass, fields

import numpy as np
import orjson
import pandas as pd

from fraudstream.features import columnar as col
from fraudstream.features.account import AccountFeatures
from fraudstream.features.config import FEATURE_CODE_VERSION, MICROS_PER_SECOND, FeatureConfig, feature_names
from fraudstream.features.exceptions import MissingColumnsError, StateFormatError
from fraudstream.features.merchant import MerchantFeatures
from fraudstream.features.store import NO_TIME

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
SNAPSHOT_FORMAT = 1
#: Idle keys are swept at most once per hour of event time (expiry itself is exact: see store.expire).
SWEEP_INTERVAL_US = 3_600 * MICROS_PER_SECOND


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


class FeatureState:
    """All feature state of one engine instance (or of a training replay)."""

    def __init__(self, config: FeatureConfig | None = None) -> None:
        self.config = config or FeatureConfig()
        self.feature_names = feature_names(self.config)
        self._names = pd.Index(self.feature_names)  # built once, not per batch
        self.accounts = AccountFeatures(self.config)
        self.merchants = MerchantFeatures(self.config)
        self.clock_us = NO_TIME
        self._next_sweep_us = NO_TIME
        self._evicted = [0, 0]

    def process(self, batch: pd.DataFrame) -> pd.DataFrame:
        """Feature rows (FEATURE_NAMES + is_late) for the batch, same index and order; updates state."""
        missing = [name for name in REQUIRED_COLUMNS if name not in batch.columns]
        if missing:
            raise MissingColumnsError(f"batch lacks columns: {', '.join(missing)}")
        matrix, late = self.process_columns(col.batch_columns(batch, REQUIRED_COLUMNS))
        frame = pd.DataFrame(matrix, index=batch.index, columns=self._names, copy=False)
        frame["is_late"] = late
        return frame

    def process_columns(self, batch: col.Columns) -> tuple[np.ndarray, np.ndarray]:
        """process() over arrays (col.batch_columns of REQUIRED_COLUMNS): the (rows, feature_names)
        float matrix and is_late, in the batch's order. What an engine calls per partition: no
        DataFrame per call, which costs more than the features of a small batch."""
        rows = len(batch["event_time_us"])
        if rows == 0:
            return np.zeros((0, len(self.feature_names))), np.zeros(0, dtype=bool)
        account = self.accounts.columns(batch)
        merchant = self.merchants.columns(batch)
        matrix = np.column_stack([*(account[name] for name in self.accounts.names), *merchant.values()])
        self.clock_us = max(self.clock_us, int(batch["event_time_us"].max()))
        if self.clock_us >= self._next_sweep_us:
            self._sweep()
        return matrix, account["is_late"]

    def apply_labels(self, labels: pd.DataFrame) -> None:
        """Label feedback; each label affects only transactions at or after its labeled_at."""
        self.merchants.apply_labels(labels)

    def _sweep(self) -> None:
        self._evicted[0] += self.accounts.store.evict_idle(self.clock_us, self.config.account_ttl_s * MICROS_PER_SECOND)
        self._evicted[1] += self.merchants.store.evict_idle(
            self.clock_us, self.config.merchant_ttl_s * MICROS_PER_SECOND
        )
        self._next_sweep_us = self.clock_us + SWEEP_INTERVAL_US

    def stats(self) -> StateStats:
        return StateStats(
            accounts=len(self.accounts.store),
            merchants=len(self.merchants.store),
            account_bytes=self.accounts.store.nbytes(),
            merchant_bytes=self.merchants.store.nbytes(),
            late_events=self.accounts.late_events,
            evicted_accounts=self._evicted[0],
            evicted_merchants=self._evicted[1],
        )

    def bytes_per_account(self) -> float:
        """State bytes per live account (scalars + retained history + remembered values)."""
        return self.stats().bytes_per_account

    def snapshot(self) -> bytes:
        """The whole state as an .npz archive of plain arrays (loaded with allow_pickle=False)."""
        meta = {
            "format": SNAPSHOT_FORMAT,
            "feature_code_version": FEATURE_CODE_VERSION,
            "config": self.config.to_dict(),
            "clock_us": self.clock_us,
            "next_sweep_us": self._next_sweep_us,
            "late_events": self.accounts.late_events,
            "evicted": self._evicted,
        }
        arrays = {"meta": np.frombuffer(orjson.dumps(meta), dtype=np.uint8)}
        arrays.update(self.accounts.store.to_arrays("account"))
        arrays.update(self.merchants.store.to_arrays("merchant"))
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        return buffer.getvalue()

    @classmethod
    def restore(cls, blob: bytes) -> FeatureState:
        """Inverse of snapshot(); refuses snapshots of another format or feature-code version."""
        try:
            with np.load(io.BytesIO(blob), allow_pickle=False) as archive:
                arrays = {name: archive[name] for name in archive.files}
            meta = orjson.loads(arrays.pop("meta").tobytes())
        except (ValueError, OSError, KeyError) as error:
            raise StateFormatError(f"not a feature-state snapshot: {error}") from None
        if meta.get("format") != SNAPSHOT_FORMAT or meta.get("feature_code_version") != FEATURE_CODE_VERSION:
            raise StateFormatError(
                f"snapshot format {meta.get('format')} / feature code {meta.get('feature_code_version')} "
                f"does not match this code ({SNAPSHOT_FORMAT} / {FEATURE_CODE_VERSION})"
            )
        state = cls(FeatureConfig.from_dict(meta["config"]))
        state.accounts.store.load_arrays("account", arrays)
        state.merchants.store.load_arrays("merchant", arrays)
        state.clock_us = meta["clock_us"]
        state._next_sweep_us = meta["next_sweep_us"]
        state.accounts.late_events = meta["late_events"]
        state._evicted = list(meta["evicted"])
        return state
