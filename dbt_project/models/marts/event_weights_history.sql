{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='fail',
) }}
-- Step 1: w_e = ln(P(e | Goal) / P(e | no Goal)) per event name and weights date d, over the
-- events of d's rolling horizon, event_ts in [d - weight_horizon_days, d - weight_window_hours)
-- (int_events__goal_followed), with Laplace smoothing (alpha = 1):
--   P(e | Goal)    = (n_followed_e + 1)     / (N_followed + V)
--   P(e | no Goal) = (n_not_followed_e + 1) / (N_not_followed + V)
-- where V is the number of distinct event names in d's horizon.
-- The dates of a run: its as_of and the weights_as_of of every send it scores. Append-only:
-- a date's weights are computed once, by the first run that needs them, and then frozen, so
-- N daily runs and one full recompute over the same data give the same table.
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

labelled as (
    select * from {{ ref('int_events__goal_followed') }}
),

in_horizon as (
    select
        new_dates.weights_as_of,
        labelled.event_name,
        labelled.is_followed
    from new_dates
    inner join labelled
        on labelled.event_ts >= new_dates.weights_as_of - {{ hours(var('weight_horizon_days') ~ ' * 24') }}
        and labelled.event_ts < new_dates.weights_as_of - {{ hours(var('weight_window_hours')) }}
),

counts as (
    select
        weights_as_of,
        event_name,
        count(*) as n_events,
        count(*) filter (where is_followed) as n_followed,
        count(*) filter (where not is_followed) as n_not_followed
    from in_horizon
    group by weights_as_of, event_name
),

totals as (
    select
        weights_as_of,
        sum(n_followed) as total_followed,
        sum(n_not_followed) as total_not_followed,
        count(*) as vocabulary_size
    from counts
    group by weights_as_of
),

probabilities as (
    select
        counts.weights_as_of,
        counts.event_name,
        counts.n_events,
        counts.n_followed,
        counts.n_not_followed,
        cast(counts.n_followed + 1 as double)
        / cast(totals.total_followed + totals.vocabulary_size as double) as p_given_goal,
        cast(counts.n_not_followed + 1 as double)
        / cast(totals.total_not_followed + totals.vocabulary_size as double) as p_given_no_goal
    from counts
    inner join totals
        on totals.weights_as_of = counts.weights_as_of
),

weights as (
    select
        cast(weights_as_of as timestamp) as weights_as_of,
        event_name,
        cast(n_events as bigint) as n_events,
        cast(n_followed as bigint) as n_followed,
        cast(n_not_followed as bigint) as n_not_followed,
        p_given_goal,
        p_given_no_goal,
        ln(p_given_goal / p_given_no_goal) as weight
    from probabilities
)

select * from weights
