{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='fail',
) }}
-- The method, explained once: docs block method_event_weights (models/method.md).
-- Step 1: w_e = ln(P(e | Goal) / P(e | no Goal)) per event name and weights date d, over the
-- events of d's rolling horizon, event_ts in [d - weight_horizon_days, d - weight_window_hours)
-- (int_events__goal_followed), T long.
--
-- P(e | Goal) is the probability of observing e in a moment that a goal event follows within
-- weight_window_hours, P(e | no Goal) in a moment that none follows: e's rate per hour in the
-- user's followed time (int_goals__followed_time, F_u hours of the horizon) and in the rest
-- (T - F_u hours; the per-user strata: macro event_weight_strata). Their ratio is estimated
-- within users and pooled over users by Mantel-Haenszel, so that users who are simply more
-- active (more goals and more of every event) do not make every event look predictive:
--   ratio_e = sum_u a_ue (T - F_u) / T  /  sum_u b_ue F_u / T
-- a_ue, b_ue = the user's events e that are / are not followed, with 0.5 added to the
-- numerator and the denominator (an event name with no evidence weighs ln(1) = 0).
-- llr = ln(ratio_e). An event unrelated to the goal happens at the same rate in both kinds of
-- time and weighs about 0.
--
-- The goal event's own ratio is not identified (its goals are what make the followed time),
-- so its weight is the largest proxy weight, at least 1 (var goal_weight overrides it): the
-- goal counts at least as much as its best predictor. It always has a row.
--
-- The dates of a run: its as_of and the weights_as_of of every send it scores. Append-only:
-- a date's weights are computed once, by the first run that needs them, and then frozen, so
-- N daily runs and one full recompute over the same data give the same table.
{#- the macro's labelled history (one ASOF join over every event) is planned only when a date
    other than as_of is new, which a query tells when the model runs (a daily run has none) -#}
{%- set others = other_new_weights_dates() %}
{%- set strata_columns =
    'weights_as_of, user_id, event_name, n_followed, n_not_followed, horizon_us, us_followed' %}
with dates as (
    select {{ as_of() }} as weights_as_of
    union
    select distinct weights_as_of from {{ ref('int_sends__to_score') }}
),

new_dates as (
    select weights_as_of from dates
    {%- if is_incremental() %}
    where weights_as_of not in (select distinct weights_as_of from {{ this }})
    {%- endif %}
),

-- the as-of date's strata are event_weight_strata's rows (from the day tables, once a run);
-- other new dates (the weights dates of sends not yet scored) get theirs from the macro
other_dates as (
    select weights_as_of from new_dates
    where weights_as_of <> {{ as_of() }}
),

horizons as (
    {{ weight_horizons('other_dates') }}
),

strata as (
    select {{ strata_columns }}
    from {{ ref('event_weight_strata') }}
    where weights_as_of in (select new_dates.weights_as_of from new_dates)
    {%- if others %}
    union all
    select {{ strata_columns }}
    from ({{ event_weight_strata('horizons') }}) as other_strata
    {%- endif %}
),

counts as (
    select
        weights_as_of,
        event_name,
        sum(n_followed + n_not_followed) as n_events,
        sum(n_followed) as n_followed,
        sum(n_not_followed) as n_not_followed,
        -- integer sums (microseconds), divided once: exact, so the same in every run
        {{ wide_sum('n_followed * (horizon_us - us_followed)') }} / any_value(horizon_us) as mh_followed,
        {{ wide_sum('n_not_followed * us_followed') }} / any_value(horizon_us) as mh_not_followed
    from strata
    group by weights_as_of, event_name
),

names as (
    select
        weights_as_of,
        event_name
    from counts
    union
    select
        weights_as_of,
        {{ sql_text(var('goal_event')) }} as event_name
    from new_dates
),

ratios as (
    select
        names.weights_as_of,
        names.event_name,
        names.event_name = {{ sql_text(var('goal_event')) }} as is_goal,
        coalesce(counts.n_events, 0) as n_events,
        coalesce(counts.n_followed, 0) as n_followed,
        coalesce(counts.n_not_followed, 0) as n_not_followed,
        coalesce(counts.mh_followed, 0) as mh_followed,
        coalesce(counts.mh_not_followed, 0) as mh_not_followed,
        ln((coalesce(counts.mh_followed, 0) + 0.5) / (coalesce(counts.mh_not_followed, 0) + 0.5)) as llr
    from names
    left join counts
        on counts.weights_as_of = names.weights_as_of
        and counts.event_name = names.event_name
),

weights as (
    select
        cast(ratios.weights_as_of as timestamp) as weights_as_of,
        ratios.event_name,
        ratios.is_goal,
        cast(ratios.n_events as bigint) as n_events,
        cast(ratios.n_followed as bigint) as n_followed,
        cast(ratios.n_not_followed as bigint) as n_not_followed,
        cast(ratios.mh_followed as double) as mh_followed,
        cast(ratios.mh_not_followed as double) as mh_not_followed,
        ratios.llr,
        case
            when not ratios.is_goal then ratios.llr
            {%- if var('goal_weight', none) is not none %}
            else cast({{ var('goal_weight') }} as double)
            {%- else %}
            else
                greatest(1.0, coalesce(
                    max(case when not ratios.is_goal then ratios.llr end)
                        over (partition by ratios.weights_as_of),
                    1.0
                ))
            {%- endif %}
        end as weight
    from ratios
)

select * from weights
