"""The home folder and every setting of `HOME/nudgeflow.yml`, with type, default, unit and bounds."""

from __future__ import annotations

import datetime as dt
import math
import os
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
# the dbt project: $NUDGEFLOW_DBT_PROJECT, else dbt_project/ beside plugins/ (a checkout, or the
# image's /opt/nudgeflow); an installed package outside a checkout sets the variable
DBT_PROJECT_DIR = Path(os.environ.get("NUDGEFLOW_DBT_PROJECT") or REPO_ROOT / "dbt_project")
LANDING_TABLES = ("events", "users", "consents", "messages", "sends")


class NudgeflowError(Exception):
    """An error a user can fix (bad home, settings or date); the CLI prints it on one line."""


def setting(
    default,
    doc: str,
    *,
    unit: str = "",
    ge=None,
    gt=None,
    le=None,
    lt=None,
    contract: bool = False,
    dbt: bool = True,
    choices: tuple = (),
):
    """A field of :class:`Settings` with what the docs, the dbt vars and the checks need:
    its meaning, unit, bounds, whether the data contract defines it and whether dbt reads it."""
    meta = {
        "doc": doc,
        "unit": unit,
        "ge": ge,
        "gt": gt,
        "le": le,
        "lt": lt,
        "contract": contract,
        "dbt": dbt,
        "choices": choices,
    }
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Settings:
    """Every setting of a home (`HOME/nudgeflow.yml`), with the contract's defaults.

    This class is the one source of the settings: the dbt vars a run passes
    (:meth:`dbt_vars`), the `vars:` of `dbt_project.yml`, `docs/settings.md` and the lab's
    method parameters all come from it (tests/unit/test_config.py checks that they agree).
    """

    # ---------- the data contract's settings
    goal_event: str = setting("purchase", "the end-of-funnel event name (any name from your events)", contract=True)
    weight_window_hours: float = setting(
        72, 'an event is "followed by the goal" if the goal comes within this', unit="hours", gt=0, contract=True
    )
    half_life_hours: float = setting(
        24,
        "half-life of the temporal weight 2^(-\\|t_e - t\\| / half_life) around the send time",
        unit="hours",
        gt=0,
        contract=True,
    )
    window_hours: float = setting(
        48,
        "t_delta: length of the pre window [t - t_delta, t) and of the post window [t, t + t_delta)",
        unit="hours",
        gt=0,
        contract=True,
    )
    neighbours: int = setting(10, "k control users per send", ge=1, contract=True)
    holdout_fraction: float = setting(
        0.10,
        "global control group: `int(md5(user_id)[:8], 16) / 2^32 < holdout_fraction`; never scheduled",
        ge=0,
        lt=1,
        contract=True,
    )
    send_hours: tuple[int, ...] = setting(
        tuple(range(8, 22)),
        "allowed local hours (the user's timezone; unknown or missing timezone means UTC)",
        unit="hours 0..23",
        ge=0,
        le=23,
        contract=True,
        dbt=False,
    )
    max_sends_per_day: int = setting(
        1,
        "per user per schedule date, across channels (0: send nothing; more than 1 is not implemented and refused)",
        ge=0,
        le=1,
        contract=True,
        dbt=False,
    )
    min_hours_between_sends: float = setting(
        20, "per user, since the last send, landed or scheduled", unit="hours", ge=0, contract=True, dbt=False
    )
    min_days_before_repeat: int = setting(14, "the same message to the same user", unit="days", ge=0, contract=True)
    seed: int = setting(
        0,
        "seed of Thompson sampling (draws are keyed by seed, date, user, action) and of propensity resampling",
        ge=0,
        contract=True,
        dbt=False,
    )
    # ---------- Measure: beyond the contract
    frequency_bucket_hours: tuple[int, ...] = setting(
        (36, 84, 180),
        "edges of the frequency action set: gap since the previous send, `<36h`, `36-84h`, `84-180h`, `>=180h`",
        unit="hours",
        gt=0,
    )
    weight_horizon_days: int = setting(
        28, "event weights are estimated on the events of the last N days before the as-of time", unit="days", ge=1
    )
    feature_window_days: int = setting(
        28,
        "activity window of the user features that match controls (columns *_28d keep their names)",
        unit="days",
        ge=1,
    )
    min_controls: int = setting(1, "a send with fewer controls than this is recorded but not scored", ge=1)
    evidence_half_life_days: float = setting(
        28.0,
        "posteriors forget: a measured send's evidence weighs 2^(-age in days / 28); 0 never forgets",
        unit="days",
        ge=0,
    )
    cell_size: int = setting(250, "target number of users per matching cell", ge=1)
    goal_weight: float | None = setting(None, "the goal event's weight (null: max(1, the largest other weight))")
    pre_match_candidates: int = setting(
        30, "controls: the k nearest on features and Y_pre among this many (0: features only)", ge=0
    )
    pre_match_weight: float = setting(4.0, "weight of the standardised Y_pre difference in that distance", ge=0)
    measure_slice_sends: int = setting(
        200_000,
        "the controls of a first run or a remeasure are built in slices of whole send hours, each "
        "with at most this many sends (one hour at least): it bounds the memory and the spill of "
        "the candidates' ranking and outcomes (a daily run at 1M users is two slices); the rows do not depend on it",
        unit="sends",
        ge=1,
    )
    placebo_sends: int = setting(
        0,
        "per weights date, this many sends get a placebo: a user not messaged at that time, "
        "measured like a send (the gap adjustment and the null reward; e.g. 5000). 0, the default: "
        "none, since the placebo model does not scale yet (docs/benchmarks.md)",
        ge=0,
    )
    gap_bin_hours: float = setting(
        12,
        "width of the bins of the gap since the previous send, within the pre window, that the gap adjustment uses",
        unit="hours",
        gt=0,
    )
    gap_adjustment: bool = setting(
        False,
        "subtract the gap adjustment from delta_y (measured to cost decisions in the harness: "
        "docs/policies.md); off, the placebos are still measured and recorded (gap_adjustments, null_rewards)",
    )
    null_window_days: int = setting(
        28, "the gap adjustment and the null reward pool the placebos of this many days", unit="days", ge=1
    )
    gap_bias_shrinkage: float = setting(
        10,
        "the gap adjustment of a bin is its placebos' summed ΔY / (their number + this): thin bins shrink to 0",
        ge=0,
    )
    prior_cells: str = setting(
        "behaviour",
        "cells of the empirical-Bayes priors: 'behaviour' (activity-hour bin x activity half, "
        "user_features.prior_cell) or 'matching' (the controls' cells)",
        choices=("behaviour", "matching"),
        dbt=False,
    )
    activity_hour_bins: int = setting(4, "equal bins of the local day of the prior cells' activity hour", ge=1)
    send_rule: str = setting(
        "longer",
        "send or wait: send when today's frequency bucket is at least as good as every longer one, or "
        "('null') when the day's best combination beats a draw of the measured null",
        choices=("longer", "null"),
        dbt=False,
    )
    report_window_days: int = setting(
        56, "days of history in the BI marts daily_lift and channel_effects", unit="days", ge=1
    )
    control_pool: str = setting(
        "cell",
        "candidates from the treated user's cell, or its whole group (the cell without its activity bucket)",
        choices=("cell", "group"),
    )
    max_data_age_hours: float = setting(
        72,
        "refuse to plan when the newest landed event is older than this "
        "before the as-of time (stale data; 0: never refuse)",
        unit="hours",
        ge=0,
        dbt=False,
    )
    # ---------- Decide: beyond the contract
    prior_max_strength: float = setting(
        100.0,
        "cap on alpha + beta of an empirical-Bayes prior. The method-of-moments "
        "strength is used when the data show differences between users; when they do not (every "
        "action of the policy worlds, see docs/policies.md), the cap binds: a user's own evidence "
        "then outweighs the prior after about 100 sends",
        unit="pseudo-sends",
        ge=1,
        dbt=False,
    )
    prior_min_users: int = setting(
        20, "a behaviour cell with fewer users having evidence for an action uses the population prior", ge=1, dbt=False
    )
    propensity_draws: int = setting(
        100, "resamples of the posteriors used to estimate each row's propensity", ge=1, dbt=False
    )
    sampling_sharpness: float = setting(
        4.0,
        "Thompson draws come from Beta(k·alpha, k·beta): the posterior's "
        "mean with about 1/k of its variance (posterior reshaping, Chapelle & Li 2011). 1 is plain "
        "Thompson sampling; 4 explores less among actions whose means differ by a few points "
        "(docs/policies.md). Propensities are resampled with the same k",
        gt=0,
        dbt=False,
    )
    decide_history_days: int = setting(
        1,
        "planned dates of the per-user Decide tables (decide.posteriors, decide.samples: users x "
        "actions rows a date) kept in the warehouse, the latest included; a run deletes older ones "
        "(decide.choices and the report's sample of posterior paths keep every date)",
        unit="dates",
        ge=1,
        dbt=False,
    )
    policy: str = setting("agentic", "the deciding policy", choices=("agentic",), dbt=False)
    duckdb_memory_limit: str = setting(
        "50%",
        "DuckDB's memory_limit for the warehouse (dbt and the steps): a share of the machine's "
        "memory like '50%' or a size like '8GiB'; past it DuckDB spills to HOME/warehouse.duckdb.tmp. "
        "DuckDB's own default, 80 %, leaves too little beside the Python steps and Airflow",
        dbt=False,
    )

    def dbt_vars(self) -> dict:
        """The dbt vars: every setting dbt reads (the as-of time goes in $NUDGEFLOW_AS_OF, so
        that dbt's partial parsing survives from one day to the next)."""
        return {name: _dbt_value(getattr(self, name)) for name in self.dbt_names()}

    @classmethod
    def dbt_names(cls) -> list[str]:
        """The settings that dbt reads (as vars)."""
        return [f.name for f in fields(cls) if f.metadata["dbt"]]

    def as_dict(self) -> dict:
        return asdict(self)


def _dbt_value(value):
    """A setting as a dbt var: text inside Jinja raw blocks, since dbt renders the values of
    --vars as templates (`{{ 7*7 }}` would become 49); SQL quoting is the macro sql_text's."""
    if isinstance(value, str):
        return "{% raw %}" + value.replace("{%", "{% endraw %}{{ '{' ~ '%' }}{% raw %}") + "{% endraw %}"
    return _plain(value)


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


_FIELDS = {f.name: f for f in fields(Settings)}


def _kind(f) -> str:
    return {
        "str": "text",
        "float": "number",
        "int": "integer",
        "tuple[int, ...]": "list of integers",
        "float | None": "number or null",
        "bool": "true or false",
    }[str(f.type)]


def _coerce(name: str, value):
    """Cast one settings value to its field's type, or raise a one-line error."""
    f = _FIELDS[name]
    kind = _kind(f)
    try:
        if value is None and kind == "number or null":
            return None
        if kind == "list of integers":
            if not isinstance(value, (list, tuple)) or not value:
                raise TypeError
            return tuple(_integer(v) for v in value)
        if kind == "integer":
            return _integer(value)
        if kind in ("number", "number or null"):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise TypeError
            return float(value)
        if kind == "true or false":
            if not isinstance(value, bool):
                raise TypeError
            return value
        if kind == "text":
            if not isinstance(value, str) or not value.strip():
                raise TypeError
            return value.strip()
    except (TypeError, ValueError, OverflowError):
        pass
    raise NudgeflowError(f"nudgeflow.yml: '{name}' must be {kind}{_bounds_text(f)}, got {value!r}")


def _integer(value) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or float(value) != int(value)
    ):
        raise TypeError
    return int(value)


def _bounds_text(f) -> str:
    m = f.metadata
    parts = [
        f"{op} {m[key]}" for key, op in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")) if m[key] is not None
    ]
    if m["choices"]:
        parts.append("one of " + ", ".join(m["choices"]))
    return f" ({' and '.join(parts)})" if parts else ""


def _validate(s: Settings) -> None:
    """Every value inside its field's bounds, and the relations between settings."""
    for f in fields(s):
        m, value = f.metadata, getattr(s, f.name)
        for v in value if isinstance(value, tuple) else (value,):
            if v is None or isinstance(v, str) and not m["choices"]:
                continue
            ok = (
                (m["choices"] and v in m["choices"])
                if m["choices"]
                else (
                    (m["ge"] is None or v >= m["ge"])
                    and (m["gt"] is None or v > m["gt"])
                    and (m["le"] is None or v <= m["le"])
                    and (m["lt"] is None or v < m["lt"])
                )
            )
            if not ok:
                raise NudgeflowError(f"nudgeflow.yml: '{f.name}' out of bounds{_bounds_text(f)}, got {_plain(value)!r}")
    if not re.fullmatch(r"\s*\d+(\.\d+)?\s*(%|[KMGT]i?B)\s*", s.duckdb_memory_limit, flags=re.IGNORECASE):
        raise NudgeflowError(
            f"nudgeflow.yml: 'duckdb_memory_limit' must be a share like '50%' or a size like '8GiB', "
            f"got {s.duckdb_memory_limit!r}"
        )
    if list(s.frequency_bucket_hours) != sorted(set(s.frequency_bucket_hours)):
        raise NudgeflowError("nudgeflow.yml: 'frequency_bucket_hours' must be strictly increasing")
    if s.weight_horizon_days * 24 <= s.weight_window_hours:
        raise NudgeflowError("nudgeflow.yml: 'weight_horizon_days' must be longer than 'weight_window_hours'")


SETTINGS_DOC = """# Settings: `HOME/nudgeflow.yml`

<!-- generated from plugins/nudgeflow/config.py: python -m nudgeflow.config > docs/settings.md -->

Every key is optional; a missing file means all defaults. An unknown key, a value of the
wrong type or out of its bounds stops the run before any work, with a one-line error naming
the key and its bounds. The keys marked "in the contract" are the data contract's
(docs/contract.md); the others are nudgeflow's own. The ones "read by dbt" reach the SQL
models as dbt vars; `dbt_project/dbt_project.yml` declares the same defaults for a dbt run by
hand (a test keeps them equal).

{table}
"""


def settings_table() -> str:
    """The Markdown table of every setting (docs/settings.md is generated from it)."""
    rows = [
        "| setting | default | unit | bounds | in the contract | read by dbt | meaning |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in fields(Settings):
        m = f.metadata
        default = _plain(f.default)
        default = str(default).lower() if isinstance(default, bool) else default
        rows.append(
            f"| `{f.name}` | `{'null' if default is None else default}` | {m['unit']} | "
            f"{_bounds_text(f)[2:-1]} | {'yes' if m['contract'] else ''} | {'yes' if m['dbt'] else ''} "
            f"| {m['doc']} |"
        )
    return "\n".join(rows)


def load_settings(home: Path) -> Settings:
    """Read `HOME/nudgeflow.yml` (all keys optional) over the contract's defaults."""
    import yaml

    path = Path(home) / "nudgeflow.yml"
    if not path.exists():
        return Settings()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as exc:
        raise NudgeflowError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise NudgeflowError(f"{path}: not valid YAML{where}") from None
    if not isinstance(raw, dict):
        raise NudgeflowError(f"{path}: expected a mapping of settings, got {type(raw).__name__}")
    values, extra = {}, {}
    for key, value in raw.items():
        if key in _FIELDS:
            values[key] = _coerce(key, value)
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


if __name__ == "__main__":  # python -m nudgeflow.config > docs/settings.md
    print(SETTINGS_DOC.format(table=settings_table()))
