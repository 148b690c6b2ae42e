{{ config(materialized='table') }}
{%- set pre_match = var('pre_match_candidates') | int %}
{%- set n_candidates = [var('neighbours') | int, pre_match] | max %}
-- The method, explained once: docs block method_controls (models/method.md).
-- Step 3, the controls: for each send of the batch and each of its placebos
-- (int_sends__to_measure), the k = neighbours nearest users of the treated user's cell on the
-- send's day (Euclidean distance on the standardised features of
-- int_user_features__dated at date_trunc('day', sent_ts): behaviour before the send)
-- who are not the treated user and had no send in [t - window_hours, t + window_hours).
-- Ties are broken by md5(user_id), then user_id. A send may get fewer than k controls.
-- Each candidate's sends are checked as one list per user (no pairwise join with sends) and
-- the k nearest are kept by a ranking window.
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
),

-- the pool a control is drawn from (the treated user's cell, or with control_pool 'group' the
-- cell without its activity bucket), on both sides, so that the join below is one equi-join on
-- (feature_date, pool): about cell_size candidates per send
pools as (
    select * from {{ ref('int_user_features__pools') }}
),

-- materialised first: left to the optimiser, DuckDB joined every pool with itself before it
-- joined the sends (all users x pool size rows: 68M at 10k users, 890M at 100k)
treated {{ materialized_cte() }} (
    {{ in_pools('to_score') }}
),

candidates as (
    select
        treated.send_id,
        treated.sent_ts,
        control.user_id as control_user_id,
        control.user_hash as control_user_hash,
        {{ feature_distance('treated', 'control') }} as distance
    from treated
    inner join pools as control
        on control.feature_date = treated.feature_date
        and control.pool = treated.pool
        and control.user_id <> treated.user_id
    -- each user's send times that can fall in the window of some send of the batch
    left join {{ ref('int_users__send_times') }} as sends_by_user
        on sends_by_user.user_id = control.user_id
    where
        sends_by_user.sent_us is null
        or not {{ any_in_window(
            'sends_by_user.sent_us',
            'treated.sent_us - ' ~ ((var('window_hours') * 3600000000) | int),
            'treated.sent_us + ' ~ ((var('window_hours') * 3600000000) | int),
        ) }}
),

-- the n nearest by one ranking window: a sort, which DuckDB spills under a memory limit (a top-k
-- min_by aggregate ran out of memory at 100k users with memory_limit 2GB; at 10k users both took 9 s)
nearest as (
    select
        send_id,
        sent_ts,
        control_user_id,
        distance,
        row_number() over (
            partition by send_id order by distance, control_user_hash, control_user_id
        ) as control_rank
    from candidates
    qualify control_rank <= {{ n_candidates }}
)

select
    send_id,
    sent_ts,
    control_user_id,
    distance,
    control_rank
from nearest
