{{ config(
    materialized=sliced_table(),
    slice_from='int_sends__to_measure',
    slice_by="date_trunc('hour', sent_ts)",
) }}
{%- set pre_match = var('pre_match_candidates') | int %}
{%- set n_candidates = [var('neighbours') | int, pre_match] | max %}
{%- set window_us = (var('window_hours') * 3600000000) | int %}
-- The method, explained once: docs block method_controls (models/method.md).
-- Step 3, the controls: for each send of the batch and each of its placebos
-- (int_sends__to_measure), the k = neighbours nearest users of the treated user's cell on the
-- send's day (Euclidean distance on the standardised features of
-- int_user_features__dated at date_trunc('day', sent_ts): behaviour before the send)
-- who are not the treated user and had no send in [t - window_hours, t + window_hours).
-- Ties are broken by md5(user_id), then user_id. A send may get fewer than k controls.
-- Each candidate's sends near the send's day are checked as one short list per (day, user)
-- (no pairwise join with sends) and the k nearest are kept by a ranking window.
-- Built one slice of send hours at a time (macros/sliced_table.sql, measure_slice_sends): a
-- send's controls depend only on its day's pool and on sends within window_hours of it.
-- Options (evaluated by `nudgeflow evaluate measurement`, docs/measurement.md):
--   control_pool 'group' (default 'cell'): candidates from the treated user's (UTC offset x
--     goal-or-not) group, i.e. the cell without its activity bucket, not only the cell;
--   pre_match_candidates m > 0 (default 30; 0: off): keep the max(k, m) nearest as candidates;
--     int_sends__outcomes_controls then keeps the k of them whose pre-window outcome Y_pre is
--     nearest to the treated user's (matching on the pre-period outcome).
with to_score as (
    select
        send_id,
        user_id,
        sent_ts,
        date_trunc('day', sent_ts) as feature_date,
        {{ epoch_us('sent_ts') }} as sent_us
    from {{ ref('int_sends__to_measure') }}
    where {{ in_slice('sent_ts') }}
),

-- the pool a control is drawn from (the treated user's cell, or with control_pool 'group' the
-- cell without its activity bucket), on both sides, so that the join below is one equi-join on
-- (feature_date, pool): about cell_size candidates per send. tie_rank orders a day's users
-- by (md5(user_id), user_id), the ranking's tie-break, as one integer; the candidate rows
-- carry it instead of the ids (the ids come back for the kept ones).
pools {{ materialized_cte() }} (
    select
        pools.feature_date,
        pools.pool,
        pools.user_id,
        pools.z_events,
        pools.z_goals,
        pools.z_active_days,
        pools.z_recency,
        -- the user's send times that can fall in the window of a send of this day:
        -- [d - window_hours, d + 1 day + window_hours) (null without one)
        {{ filter_in_window(
            'send_times.sent_us',
            epoch_us('pools.feature_date') ~ ' - ' ~ window_us,
            epoch_us('pools.feature_date') ~ ' + ' ~ (window_us + 86400000000),
        ) }} as sent_us,
        row_number() over (
            partition by pools.feature_date order by pools.user_hash, pools.user_id
        ) as tie_rank
    from {{ ref('int_user_features__pools') }} as pools
    -- each user's send times that can fall in the window of some send of the batch
    left join {{ ref('int_users__send_times') }} as send_times
        on send_times.user_id = pools.user_id
    where
        {{ slice_has_day('pools.feature_date') }}
        and pools.feature_date in (select to_score.feature_date from to_score)
),

-- materialised first: left to the optimiser, DuckDB joined every pool with itself before it
-- joined the sends (all users x pool size rows: 68M at 10k users, 890M at 100k). send_key
-- numbers the sends of the slice (the ranking's partition).
treated {{ materialized_cte() }} (
    select
        to_score.send_id,
        to_score.sent_ts,
        to_score.sent_us,
        pools.feature_date,
        pools.pool,
        pools.tie_rank,
        pools.z_events,
        pools.z_goals,
        pools.z_active_days,
        pools.z_recency,
        {{ row_key(['to_score.send_id']) }} as send_key
    from to_score
    inner join pools
        on pools.user_id = to_score.user_id
        and pools.feature_date = to_score.feature_date
),

candidates as (
    select
        treated.send_key,
        control.tie_rank,
        {{ feature_distance('treated', 'control') }} as distance
    from treated
    inner join pools as control
        on control.feature_date = treated.feature_date
        and control.pool = treated.pool
        and control.tie_rank <> treated.tie_rank
    where
        control.sent_us is null
        or not {{ any_in_window(
            'control.sent_us',
            'treated.sent_us - ' ~ window_us,
            'treated.sent_us + ' ~ window_us,
        ) }}
),

-- the n nearest by one ranking window: a sort, which DuckDB spills under a memory limit (a top-k
-- min_by aggregate ran out of memory at 100k users with memory_limit 2GB; at 10k users both took 9 s)
nearest as (
    select
        send_key,
        tie_rank,
        distance,
        row_number() over (
            partition by send_key order by distance, tie_rank
        ) as control_rank
    from candidates
    qualify control_rank <= {{ n_candidates }}
)

select
    treated.send_id,
    treated.sent_ts,
    control.user_id as control_user_id,
    nearest.distance,
    nearest.control_rank
from nearest
inner join treated
    on treated.send_key = nearest.send_key
inner join pools as control
    on control.feature_date = treated.feature_date
    and control.tie_rank = nearest.tie_rank
