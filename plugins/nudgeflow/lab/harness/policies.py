"""The policies the harness compares.  Each one sees a :class:`~nudgeflow.lab.harness.loop.DayContext`
and returns the day's sends as (user position, message, hour position, propensity or None).

* ``none``: no messages.
* ``random``: a random allowed hour among those with an eligible message, then a random
  message eligible at that hour (``send_prob`` of sending at all, default 1).
* ``rules``: population-level rules learned from the measured rewards (history, then every
  matured send): the population-best message (a whole message, not its labels), the
  population-best local hour and the population-best frequency bucket; the same for everyone.
* ``mab_ts``: MABWiser Thompson sampling, one bandit per user over whole messages (arm =
  message), random allowed hour, sends whenever something is eligible.
* ``mab_knn``: MABWiser ``KNearest`` neighbourhood policy (Thompson sampling inside the
  neighbourhood) over user features (the z-scores of the measure step and the UTC offset).
* ``vw``: Vowpal Wabbit ``--cb_explore_adf`` (epsilon-greedy), shared user features x
  action features (the message's channel and labels), cost = -reward.
* ``ours``: the production policy (``bayes.empirical_bayes_prior``, ``bayes.posterior``,
  ``bayes.thompson_sample`` with ``bayes.draw_keys``, ``matching.decide`` and
  ``matching.propensity``) on the action outcomes of the in-memory measure; ablations:
  ``eb_prior=False`` (Beta(1, 1) priors), ``modular=False`` (one flat action set
  ``message`` instead of channel + label sets), ``timing=False`` (no send-hour and frequency
  action sets: a uniformly random allowed hour and always send), ``controls=False`` (reward
  without neighbour controls), ``forget_half_life_days`` (evidence half-life other than the
  production ``evidence_half_life_days`` = 28; 0 never forgets),
  ``truth_reward=True`` (diagnostic only: reward = 1 iff the send's true effect > 0, i.e. a
  perfect measure step; separates what the policy can do from what the reward lets it learn).
* ``oracle``: the truly best eligible (message, hour) of the day per user, sent when its true
  effect (with the fatigue of the gap since the last send) is positive.
* ``oracle_population`` (a reference): the same with the population's mean true effect per
  (message, hour, gap bucket) instead of the user's own: the best any policy can do that
  treats all users alike.

The peers learn from the same binarised, neighbour-controlled reward as ``ours``.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from nudgeflow.decide.action_space import action_key, message_actions
from nudgeflow.decide.action_space import action_space as run_action_space
from nudgeflow.decide.eligibility import Eligibility
from nudgeflow.decide.matching import Options, decide, propensity
from nudgeflow.decide.priors import NULL_ACTION, empirical_bayes_prior, null_posterior, posterior
from nudgeflow.decide.sampling import DrawKeys, draw_keys, thompson_sample


class Policy:
    name = "policy"
    needs_rewards = True
    controls = True

    def start(self, sim) -> None:
        self.sim = sim
        self.seed = int(sim.world.seed)
        self.rng = np.random.default_rng([self.seed, 4242, sum(map(ord, self.name))])

    def observe(self, ctx) -> None:
        pass

    def decide(self, ctx):
        raise NotImplementedError


def _empty():
    z = np.zeros(0, dtype=np.int64)
    return z, z, z, None


def random_choice(ctx, rng, users_mask=None):
    """Random feasible hour, then random eligible message at it, for every user with options."""
    feasible = ctx.eligible.any(axis=1)  # (U, H)
    has = feasible.any(axis=1)
    if users_mask is not None:
        has &= users_mask
    ui = np.nonzero(has)[0]
    r = rng.random(feasible.shape)
    h = np.where(feasible, r, -1.0)[ui].argmax(axis=1)
    el = ctx.eligible[ui, :, h]  # (n, M)
    r2 = rng.random(el.shape)
    m = np.where(el, r2, -1.0).argmax(axis=1)
    return ui, m, h


class NoMessages(Policy):
    name = "none"
    needs_rewards = False

    def decide(self, ctx):
        return _empty()


class RandomPolicy(Policy):
    name = "random"
    needs_rewards = False

    def __init__(self, send_prob: float = 1.0):
        self.send_prob = send_prob

    def decide(self, ctx):
        mask = self.rng.random(len(ctx.users)) < self.send_prob
        ui, m, h = random_choice(ctx, self.rng, mask)
        # propensity of (send, hour, message): send_prob x 1/feasible hours x 1/eligible messages
        n_h = ctx.eligible.any(axis=1)[ui].sum(axis=1)
        n_m = ctx.eligible[ui, :, h].sum(axis=1)
        return ui, m, h, self.send_prob / (n_h * n_m)


class Oracle(Policy):
    name = "oracle"
    needs_rewards = False

    def decide(self, ctx):
        from nudgeflow.lab.harness.loop import oracle_values

        te = oracle_values(ctx)
        n_u, n_m, n_h = te.shape
        flat = te.reshape(n_u, -1)
        best = flat.argmax(axis=1)
        val = flat[np.arange(n_u), best]
        ui = np.nonzero(val > 0)[0]
        return ui, best[ui] // n_h, best[ui] % n_h, None


class PopulationOracle(Policy):
    """Reference, not a peer: the best policy that treats all users alike, by the truth.

    For every (message, hour) and frequency bucket of the gap since a user's last send, the
    mean true effect over the users eligible for it today; each user gets the eligible
    (message, hour) whose mean for the user's bucket is highest, sent when that mean is
    positive. It knows the population's true average responses exactly, but nothing about
    the individual user: the ceiling of non-personalised policies such as ``rules``.
    """

    name = "oracle_population"
    needs_rewards = False

    def decide(self, ctx):
        from nudgeflow.lab.harness.loop import oracle_values

        te = oracle_values(ctx)  # (U, M, H), -inf if not eligible
        ok = np.isfinite(te)
        bucket = ctx.gap_bucket  # (U, H)
        score = np.full(te.shape, -np.inf)
        for b in np.unique(bucket):
            users_b = (bucket == b)[:, None, :] & ok  # (U, M, H)
            n = users_b.sum(axis=0)
            mean = np.where(n > 0, np.where(users_b, te, 0.0).sum(axis=0) / np.maximum(n, 1), -np.inf)
            score = np.where(users_b, mean[None, :, :], score)
        n_u, _, n_h = te.shape
        flat = score.reshape(n_u, -1)
        best = flat.argmax(axis=1)
        ui = np.nonzero(flat[np.arange(n_u), best] > 0)[0]
        return ui, best[ui] // n_h, best[ui] % n_h, None


# --------------------------------------------------------------------- action space


def action_space(sim, *, modular: bool = True) -> pl.DataFrame:
    """Every (action_set, action) as the pipeline's (``decide.action_space``); flat: one set
    ``message`` in place of the channel and the labels."""
    if not modular:
        flat = pl.DataFrame({"action_set": "message", "action": sim.world.msg_ids.to_list()})
        return run_action_space([], flat, sim.hours, sim.s.frequency_bucket_hours)
    return run_action_space(
        sim.world.catalogue["channel"].unique().to_list(),
        catalogue_actions(sim).filter(pl.col("action_set") != "channel"),
        sim.hours,
        sim.s.frequency_bucket_hours,
    )


def catalogue_actions(sim) -> pl.DataFrame:
    """message_id, action_set, action of the world's catalogue: its channel and each label."""
    cat = sim.world.catalogue
    label_sets = sorted(c for c in cat.columns if c.startswith("label_"))
    return (
        cat.select("message_id", "channel", *label_sets)
        .unpivot(index="message_id", variable_name="action_set", value_name="action")
        .drop_nulls("action")
    )


def build_options(ctx, actions: pl.DataFrame, *, modular: bool = True, send_rule: str | None = None) -> Options:
    """decide.matching.Options of the day from the harness context, as steps/match.py builds them."""
    sim = ctx.sim
    cat = sim.world.catalogue
    pairs = list(zip(actions["action_set"].to_list(), actions["action"].to_list()))
    if modular:
        sets = ["channel", *sorted(c for c in cat.columns if c.startswith("label_"))]
        long = catalogue_actions(sim)
    else:
        sets = ["message"]
        long = cat.select("message_id", pl.lit("message").alias("action_set"), pl.col("message_id").alias("action"))
    ma = message_actions(cat["message_id"].to_list(), long, sets, pairs)
    return Options.build(
        pairs,
        ctx.hours,
        sim.s.frequency_bucket_hours,
        ma,
        ctx.send_at,
        Eligibility.from_dense(ctx.eligible),
        ctx.gap_hours,
        send_rule=send_rule or sim.s.send_rule,
    )


def outcomes_with_messages(sim, as_of_us: int, **forget) -> pl.DataFrame:
    """action_outcomes plus a flat action set ``message`` (the message_id of each send)."""
    out = sim.meas.action_outcomes(as_of_us, **forget)
    meas = sim.meas
    win = int(round(sim.s.window_hours * 3600 * 1_000_000))
    t = meas.sends["t"]
    ok = (meas.scored_at >= 0) & (t + win <= as_of_us) & ~np.isnan(meas.reward)
    idx = np.nonzero(ok)[0]
    age_d = (as_of_us - (t[idx] + win)) / (86400 * 1_000_000)
    wt = np.ones(len(idx))
    if forget.get("half_life_days"):
        wt = np.power(2.0, -age_d / forget["half_life_days"])
    if forget.get("window_days"):
        wt = np.where(age_d <= forget["window_days"], wt, 0.0)
    msg = pl.DataFrame(
        {
            "user_id": np.array(meas.user_ids, dtype=object)[meas.sends["u"][idx]].tolist(),
            "action_set": "message",
            "action": sim.world.msg_ids.gather(meas.sends["m"][idx]).to_list(),
            "r": meas.reward[idx] * wt,
            "w": wt,
        },
        schema={"user_id": pl.String, "action_set": pl.String, "action": pl.String, "r": pl.Float64, "w": pl.Float64},
    )
    msg = msg.group_by("user_id", "action_set", "action").agg(successes=pl.col("r").sum(), trials=pl.col("w").sum())
    return pl.concat([out, msg.filter(pl.col("trials") > 0)], how="vertical_relaxed")


# --------------------------------------------------------------------- ours


class Agentic(Policy):
    """The production policy, called through nudgeflow.decide (priors, sampling, matching)."""

    def __init__(
        self,
        name: str = "ours",
        *,
        eb_prior: bool = True,
        modular: bool = True,
        timing: bool = True,
        controls: bool = True,
        forget_half_life_days: float | None = None,
        propensities: bool = False,
        propensity_draws: int | None = None,
        truth_reward: bool = False,
        send_rule: str | None = None,
        settings_overrides: dict | None = None,
        fractional: bool = False,
    ):
        self.name = name
        self.fractional = fractional
        self.send_rule = send_rule
        self.settings_overrides = settings_overrides
        self.truth_reward = truth_reward
        self.eb_prior = eb_prior
        self.modular = modular
        self.timing = timing
        self.controls = controls
        self.forget = forget_half_life_days
        self.propensities = propensities
        self.propensity_draws = propensity_draws
        self.last: dict = {}

    def start(self, sim) -> None:
        super().start(sim)
        sim.meas.fractional = self.fractional

    def posterior_arrays(self, ctx):
        sim = self.sim
        s = sim.s
        actions = action_space(sim, modular=self.modular)
        # production reads the weighted evidence of action_outcomes (evidence_half_life_days)
        half_life = s.evidence_half_life_days if self.forget is None else self.forget
        outcomes = outcomes_with_messages(sim, ctx.as_of_us, half_life_days=half_life or None)
        outcomes = outcomes.join(actions, on=["action_set", "action"], how="semi")
        cells = sim.meas.cells_frame()
        if self.eb_prior:
            prior = empirical_bayes_prior(
                outcomes, cells, max_strength=s.prior_max_strength, min_users=s.prior_min_users
            )
        else:
            prior = pl.DataFrame(
                schema={
                    "cell": pl.String,
                    "action_set": pl.String,
                    "action": pl.String,
                    "alpha": pl.Float64,
                    "beta": pl.Float64,
                    "n_users": pl.UInt32,
                    "trials": pl.Float64,
                    "source": pl.String,
                }
            )
        users = pl.DataFrame({"user_id": ctx.user_ids}).join(cells, on="user_id", how="left")
        post = posterior(users, actions, prior, outcomes)
        if self.controls and (self.send_rule or s.send_rule) == "null":
            # the measured null (placebos of the user's cell), as steps/priors.py adds it
            matching = pl.DataFrame({"user_id": ctx.user_ids}).join(sim.meas.matching_cells_frame(), on="user_id")
            nulls = null_posterior(matching, sim.meas.null_counts(ctx.as_of_us), strength=s.prior_max_strength)
            if nulls.height:
                post = pl.concat([post, nulls], how="vertical_relaxed")
                actions = pl.concat(
                    [actions, pl.DataFrame([NULL_ACTION], schema=["action_set", "action"], orient="row")],
                    how="diagonal_relaxed",
                )
        post = post.sort("user_id", "action_set", "action")
        actions = actions.sort("action_set", "action")
        n_a = actions.height
        order = {u: i for i, u in enumerate(post["user_id"].unique(maintain_order=True).to_list())}
        assert list(order) == sorted(ctx.user_ids) == ctx.user_ids
        alpha = post["alpha"].to_numpy().reshape(len(ctx.user_ids), n_a)
        beta = post["beta"].to_numpy().reshape(len(ctx.user_ids), n_a)
        keys = [action_key(a, b) for a, b in actions.select("action_set", "action").iter_rows()]
        return actions, keys, alpha, beta

    def decide(self, ctx, draw_seed: int | None = None):
        actions, keys, alpha, beta = self.posterior_arrays(ctx)
        seed = self.seed if draw_seed is None else draw_seed
        k = self.sim.s.sampling_sharpness
        theta = thompson_sample(alpha, beta, draw_keys(seed, ctx.day.toordinal(), ctx.user_ids, keys), k)
        opts = build_options(ctx, actions, modular=self.modular, send_rule=self.send_rule)
        if not self.timing:
            theta = theta.copy()
            theta[:, opts.hour_actions] = self.rng.random((theta.shape[0], len(opts.hour_actions)))
            theta[:, opts.frequency_actions] = 0.5
        send, hour, message = decide(theta, opts)
        prop = None
        if self.propensities:
            draws = self.propensity_draws or self.sim.s.propensity_draws
            resample = DrawKeys.of(seed, ctx.day.toordinal(), ctx.user_ids, keys)
            prop_all = propensity(alpha, beta, opts, message, resample, draws, sharpness=k)
        ui = np.nonzero(send)[0]
        if self.propensities:
            prop = prop_all[ui]
        self.last = {"alpha": alpha, "beta": beta, "opts": opts, "keys": keys, "theta": theta}
        return ui, message[ui], hour[ui], prop


# --------------------------------------------------------------------- rules


class Rules(Policy):
    """Population-level rules: the same (best message, best hour, best frequency) for all."""

    name = "rules"
    shrink = 20.0

    def decide(self, ctx):
        sim = self.sim
        actions = action_space(sim, modular=False)
        out = outcomes_with_messages(sim, ctx.as_of_us).join(actions, on=["action_set", "action"], how="semi")
        pop = out.group_by("action_set", "action").agg(pl.col("successes").sum(), pl.col("trials").sum())
        overall = pop.group_by("action_set").agg(m0=pl.col("successes").sum() / pl.col("trials").sum())
        t = (
            actions.join(pop, on=["action_set", "action"], how="left")
            .join(overall, on="action_set", how="left")
            .with_columns(pl.col("successes", "trials").fill_null(0.0), pl.col("m0").fill_null(0.5))
            .with_columns(theta=(pl.col("successes") + self.shrink * pl.col("m0")) / (pl.col("trials") + self.shrink))
        )
        opts = build_options(ctx, actions, modular=False)
        theta = np.broadcast_to(t["theta"].to_numpy()[None, :], (len(ctx.users), actions.height))
        send, hour, message = decide(theta, opts)
        ui = np.nonzero(send)[0]
        return ui, message[ui], hour[ui], None


# --------------------------------------------------------------------- MABWiser


class MabTS(Policy):
    """MABWiser Thompson sampling, one bandit per user, arms = whole messages."""

    name = "mab_ts"

    def start(self, sim):
        super().start(sim)
        self.arms = list(range(len(sim.world.msg_ids)))
        self.bandits: dict[int, object] = {}

    def observe(self, ctx):
        from mabwiser.mab import MAB, LearningPolicy

        meas = self.sim.meas
        rows = ctx.new_scored[~np.isnan(meas.reward[ctx.new_scored])]
        if len(rows) == 0:
            return
        u = meas.sends["u"][rows]
        m = meas.sends["m"][rows]
        r = meas.reward[rows]
        order = np.argsort(u, kind="stable")
        u, m, r = u[order], m[order], r[order]
        bounds = np.r_[0, np.nonzero(np.diff(u))[0] + 1, len(u)]
        for a, b in zip(bounds[:-1], bounds[1:]):
            user = int(u[a])
            bandit = self.bandits.get(user)
            if bandit is None:
                bandit = MAB(self.arms, LearningPolicy.ThompsonSampling(), seed=self.seed * 100_003 + user)
                bandit.fit(m[a:b].tolist(), r[a:b].tolist())
                self.bandits[user] = bandit
            else:
                bandit.partial_fit(m[a:b].tolist(), r[a:b].tolist())

    def decide(self, ctx):
        ui, _, h = random_choice(ctx, self.rng)
        el = ctx.eligible[ui, :, h]
        m = np.zeros(len(ui), dtype=np.int64)
        for i, (p, e) in enumerate(zip(ui, el)):
            bandit = self.bandits.get(int(ctx.users[p]))
            if bandit is None:
                score = self.rng.random(len(self.arms))  # Beta(1, 1) draws: no data yet
            else:
                exp = bandit.predict_expectations()
                score = np.array([exp[a] for a in self.arms])
            m[i] = np.where(e, score, -np.inf).argmax()
        return ui, m, h, None


def user_context(ctx) -> np.ndarray:
    """User features for the contextual peers: the measure step's 4 z-scores and the UTC offset."""
    f = ctx.sim.meas.features
    z = f["z"][ctx.users]
    cells = np.array(f["cell"])[ctx.users]  # 'utc+05:30/g1/a03'
    off = np.array([(-1 if c[3] == "-" else 1) * (int(c[4:6]) * 60 + int(c[7:9])) for c in cells])
    return np.column_stack([z, off / 300.0])


class MabKNN(Policy):
    """MABWiser KNearest neighbourhood policy with Thompson sampling, arms = whole messages."""

    name = "mab_knn"

    def __init__(self, k: int = 50, max_history: int = 4_000):
        self.k = k
        self.max_history = max_history

    def start(self, sim):
        super().start(sim)
        self.arms = list(range(len(sim.world.msg_ids)))
        self.X: list = []
        self.A: list = []
        self.R: list = []
        self.pending: dict[int, np.ndarray] = {}  # send row -> context at decision time
        self.model = None

    def observe(self, ctx):
        from mabwiser.mab import MAB, LearningPolicy, NeighborhoodPolicy

        meas = self.sim.meas
        rows = ctx.new_scored[~np.isnan(meas.reward[ctx.new_scored])]
        if len(rows):
            for r_ in rows:
                x = self.pending.pop(int(r_), None)
                if x is None:  # a history send: context of the first loop day
                    pos = np.searchsorted(ctx.users, meas.sends["u"][r_])
                    if pos >= len(ctx.users) or ctx.users[pos] != meas.sends["u"][r_]:
                        continue
                    x = user_context(ctx)[pos]
                self.X.append(x)
                self.A.append(int(meas.sends["m"][r_]))
                self.R.append(float(meas.reward[r_]))
        if self.X:
            X = np.array(self.X[-self.max_history :])
            self.model = MAB(
                self.arms, LearningPolicy.ThompsonSampling(), NeighborhoodPolicy.KNearest(k=self.k), seed=self.seed
            )
            self.model.fit(self.A[-self.max_history :], self.R[-self.max_history :], X)

    def decide(self, ctx):
        ui, _, h = random_choice(ctx, self.rng)
        el = ctx.eligible[ui, :, h]
        x = user_context(ctx)[ui]
        if self.model is None or len(ui) == 0:
            score = self.rng.random(el.shape)
        else:
            exps = self.model.predict_expectations(x)
            if isinstance(exps, dict):
                exps = [exps]
            score = np.array([[e[a] for a in self.arms] for e in exps])
        m = np.where(el, score, -np.inf).argmax(axis=1)
        self._x = x
        return ui, m, h, None

    def sent(self, rows):
        """The harness tells the policy which send rows its decisions became."""
        for r_, x in zip(rows, self._x):
            self.pending[int(r_)] = x


# --------------------------------------------------------------------- Vowpal Wabbit


class VW(Policy):
    """Vowpal Wabbit contextual bandit with action-dependent features (cb_explore_adf)."""

    name = "vw"

    def __init__(self, args: str = "--cb_explore_adf --epsilon 0.1 -q UA --quiet"):
        self.args = args

    def start(self, sim):
        super().start(sim)
        from vowpalwabbit import Workspace

        self.vw = Workspace(f"{self.args} --random_seed {self.seed}")
        cat = sim.world.catalogue
        labels = sorted(c for c in cat.columns if c.startswith("label_"))
        self.action_feats = []
        for i in range(cat.height):
            toks = [f"ch_{cat['channel'][i]}"] + [f"{ls[6:]}_{cat[ls][i]}" for ls in labels if cat[ls][i] is not None]
            self.action_feats.append("|A " + " ".join(toks))
        self.pending: dict[int, tuple] = {}

    @staticmethod
    def _shared(x) -> str:
        return "shared |U " + " ".join(f"f{j}:{v:.4f}" for j, v in enumerate(x)) + " bias"

    def observe(self, ctx):
        meas = self.sim.meas
        rows = ctx.new_scored[~np.isnan(meas.reward[ctx.new_scored])]
        for r_ in rows:
            item = self.pending.pop(int(r_), None)
            if item is None:
                continue  # history sends: not chosen by VW, no probability to learn from
            shared, cand, chosen, prob = item
            lines = [shared] + [
                (f"0:{-float(meas.reward[r_])}:{prob} " if j == chosen else "") + self.action_feats[m]
                for j, m in enumerate(cand)
            ]
            self.vw.learn(lines)

    def decide(self, ctx):
        ui, _, h = random_choice(ctx, self.rng)
        el = ctx.eligible[ui, :, h]
        x = user_context(ctx)[ui]
        m = np.zeros(len(ui), dtype=np.int64)
        self._memo = []
        for i in range(len(ui)):
            cand = np.nonzero(el[i])[0]
            shared = self._shared(x[i])
            pmf = np.asarray(self.vw.predict([shared] + [self.action_feats[c] for c in cand]), dtype=float)
            pmf = pmf / pmf.sum()
            j = int(self.rng.choice(len(cand), p=pmf))
            m[i] = cand[j]
            self._memo.append((shared, cand, j, float(pmf[j])))
        return ui, m, h, None

    def sent(self, rows):
        for r_, item in zip(rows, self._memo):
            self.pending[int(r_)] = item


# --------------------------------------------------------------------- registry

FORGET_HALF_LIFE_DAYS = 7.0


# the variants that need the measured null or the gap adjustment measure placebos
PLACEBOS = {"placebo_sends": 5000}


def make_policy(name: str, **options) -> Policy:
    """Policy by harness name (``options``: keyword arguments of its class, e.g. send_prob)."""
    factories = {
        "none": NoMessages,
        "random": RandomPolicy,
        "rules": Rules,
        "oracle": Oracle,
        "oracle_population": PopulationOracle,
        "mab_ts": MabTS,
        "mab_knn": MabKNN,
        "vw": VW,
        "ours": lambda: Agentic("ours"),
        "ours_no_eb_prior": lambda: Agentic("ours_no_eb_prior", eb_prior=False),
        "ours_flat": lambda: Agentic("ours_flat", modular=False),
        "ours_no_timing": lambda: Agentic("ours_no_timing", timing=False),
        "ours_no_controls": lambda: Agentic("ours_no_controls", controls=False),
        "ours_null": lambda: Agentic("ours_null", send_rule="null", settings_overrides=PLACEBOS),
        "ours_fraction": lambda: Agentic("ours_fraction", fractional=True, settings_overrides=PLACEBOS),
        "ours_adjusted": lambda: Agentic("ours_adjusted", settings_overrides={**PLACEBOS, "gap_adjustment": True}),
        "ours_matching_cells": lambda: Agentic("ours_matching_cells", settings_overrides={"prior_cells": "matching"}),
        "ours_forget": lambda: Agentic("ours_forget", forget_half_life_days=FORGET_HALF_LIFE_DAYS),
        "ours_no_forget": lambda: Agentic("ours_no_forget", forget_half_life_days=0.0),
        "ours_true_reward": lambda: Agentic("ours_true_reward", truth_reward=True),
        "ours_forget_true_reward": lambda: Agentic(
            "ours_forget_true_reward", truth_reward=True, forget_half_life_days=FORGET_HALF_LIFE_DAYS
        ),
    }
    if name not in factories:
        raise ValueError(f"unknown policy {name!r}; known: {', '.join(factories)}")
    return factories[name](**options)


PEERS = ("random", "rules", "mab_ts", "mab_knn", "vw")
ABLATIONS = (
    "ours_no_eb_prior",
    "ours_flat",
    "ours_no_timing",
    "ours_no_controls",
    "ours_adjusted",
    "ours_matching_cells",
    "ours_null",
)
ALL_POLICIES = (
    "none",
    *PEERS,
    "ours",
    *ABLATIONS,
    "ours_forget",
    "ours_no_forget",
    "ours_true_reward",
    "oracle_population",
    "oracle",
)


# what each stress world is for: the default world gets every policy, the others the peers,
# ours, the oracle and the variant the scenario is about
WORLD_POLICIES = {
    "default": ALL_POLICIES,
    "drift": ("none", *PEERS, "ours", "ours_forget", "ours_no_forget", "oracle_population", "oracle"),
    "fatigue": ("none", *PEERS, "ours", "ours_no_timing", "oracle_population", "oracle"),
    "lookalike": ("none", *PEERS, "ours", "ours_matching_cells", "oracle_population", "oracle"),
    "many_labels": ("none", *PEERS, "ours", "ours_flat", "oracle_population", "oracle"),
}


def policies_for(world: str) -> tuple[str, ...]:
    return WORLD_POLICIES.get(world, ALL_POLICIES)
