"""The home folder and its settings file (`HOME/nudgeflow.yml`), as fixed by the data contract."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"
LANDING_TABLES = ("events", "users", "consents", "messages", "sends")


class NudgeflowError(Exception):
    """An error a user can fix (bad home, settings or date); the CLI prints it on one line."""


@dataclass(frozen=True)
class Settings:
    """Method parameters; defaults are the contract's. Extra keys documented in docs/settings.md."""

    goal_event: str = "purchase"
    weight_window_hours: float = 72
    half_life_hours: float = 24
    window_hours: float = 48
    neighbours: int = 10
    holdout_fraction: float = 0.10
    send_hours: tuple[int, ...] = tuple(range(8, 22))
    max_sends_per_day: int = 1
    min_hours_between_sends: float = 20
    min_days_before_repeat: int = 14
    seed: int = 0
    # Beyond the contract (documented in docs/settings.md).
    frequency_bucket_hours: tuple[int, ...] = (36, 84, 180)
    weight_horizon_days: int = 28
    min_controls: int = 1
    evidence_half_life_days: float = 28.0
    prior_max_strength: float = 100.0
    prior_min_users: int = 20
    propensity_draws: int = 100
    sampling_sharpness: float = 4.0
    policy: str = "agentic"

    def dbt_vars(self) -> dict:
        """The dbt vars: the method parameters (the as-of time goes in $NUDGEFLOW_AS_OF, so that
        dbt's partial parsing survives from one day to the next)."""
        return {
            "goal_event": self.goal_event,
            "weight_window_hours": self.weight_window_hours,
            "half_life_hours": self.half_life_hours,
            "window_hours": self.window_hours,
            "neighbours": self.neighbours,
            "holdout_fraction": self.holdout_fraction,
            "min_days_before_repeat": self.min_days_before_repeat,
            "frequency_bucket_hours": list(self.frequency_bucket_hours),
            "weight_horizon_days": self.weight_horizon_days,
            "min_controls": self.min_controls,
            "evidence_half_life_days": self.evidence_half_life_days,
        }

    def as_dict(self) -> dict:
        return asdict(self)


_FIELDS = {f.name: f for f in fields(Settings)}


def _coerce(name: str, value, default):
    """Cast one settings value to the type of its default, or raise a one-line error."""
    try:
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise TypeError
            return value
        if isinstance(default, tuple):
            if not isinstance(value, (list, tuple)) or not value:
                raise TypeError
            return tuple(int(v) for v in value)
        if isinstance(default, int):
            if isinstance(value, bool) or float(value) != int(float(value)):
                raise TypeError
            return int(value)
        if isinstance(default, float):
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        if isinstance(default, str):
            if not isinstance(value, str) or not value.strip():
                raise TypeError
            return value.strip()
    except (TypeError, ValueError):
        pass
    raise NudgeflowError(
        f"nudgeflow.yml: '{name}' must be {type(default).__name__}"
        f"{' of integers' if isinstance(default, tuple) else ''}, got {value!r}"
    )


def _validate(s: Settings) -> None:
    checks = [
        (0 <= s.holdout_fraction < 1, "holdout_fraction must be in [0, 1)"),
        (s.window_hours > 0, "window_hours must be > 0"),
        (s.half_life_hours > 0, "half_life_hours must be > 0"),
        (s.weight_window_hours > 0, "weight_window_hours must be > 0"),
        (s.neighbours >= 1, "neighbours must be >= 1"),
        (all(0 <= h <= 23 for h in s.send_hours), "send_hours must be hours 0..23"),
        (s.max_sends_per_day >= 0, "max_sends_per_day must be >= 0"),
        (s.min_hours_between_sends >= 0, "min_hours_between_sends must be >= 0"),
        (s.min_days_before_repeat >= 0, "min_days_before_repeat must be >= 0"),
        (list(s.frequency_bucket_hours) == sorted(set(s.frequency_bucket_hours)),
         "frequency_bucket_hours must be strictly increasing"),
        (s.propensity_draws >= 1, "propensity_draws must be >= 1"),
        (s.sampling_sharpness > 0, "sampling_sharpness must be > 0 (1: plain Thompson sampling)"),
        (s.evidence_half_life_days >= 0, "evidence_half_life_days must be >= 0 (0: never forget)"),
    ]
    for ok, message in checks:
        if not ok:
            raise NudgeflowError(f"nudgeflow.yml: {message}")


def load_settings(home: Path) -> Settings:
    """Read `HOME/nudgeflow.yml` (all keys optional) over the contract's defaults."""
    import yaml

    path = Path(home) / "nudgeflow.yml"
    if not path.exists():
        return Settings()
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise NudgeflowError(f"{path}: not valid YAML{where}") from None
    if not isinstance(raw, dict):
        raise NudgeflowError(f"{path}: expected a mapping of settings, got {type(raw).__name__}")
    values, extra = {}, {}
    for key, value in raw.items():
        if key in _FIELDS:
            default = _FIELDS[key].default
            values[key] = _coerce(key, value, default)
        else:
            extra[key] = value
    if extra:
        known = ", ".join(sorted(_FIELDS))
        raise NudgeflowError(f"{path}: unknown setting(s) {', '.join(map(str, extra))}; known: {known}")
    settings = Settings(**values)
    _validate(settings)
    return settings


def resolve_home(home: str | Path | None, *, must_exist: bool = True) -> Path:
    """`--home`, else $NUDGEFLOW_HOME, else ./data under the repository root."""
    chosen = Path(home or os.environ.get("NUDGEFLOW_HOME") or REPO_ROOT / "data").expanduser().resolve()
    if must_exist and not chosen.is_dir():
        raise NudgeflowError(f"home folder {chosen} does not exist (create it, or run `nudgeflow simulate`)")
    return chosen


def parse_date(value: str | dt.date) -> dt.date:
    """A schedule date as YYYY-MM-DD."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    text = str(value).strip()
    try:
        if len(text) == 10:
            return dt.date.fromisoformat(text)
    except ValueError:
        pass
    raise NudgeflowError(f"date {value!r} is not in the format YYYY-MM-DD")


def as_of(day: dt.date) -> dt.datetime:
    """The as-of time of the run for day D: D 00:00 UTC (naive datetime meaning UTC)."""
    return dt.datetime.combine(day, dt.time())


def warehouse_path(home: Path) -> Path:
    return Path(home) / "warehouse.duckdb"
