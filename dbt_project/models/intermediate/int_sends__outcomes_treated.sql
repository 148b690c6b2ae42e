{{ config(materialized='table') }}
-- Step 2, the treated user's outcomes: Y_pre and Y_post of eq. (1) around each send of the
-- batch (decayed_outcomes macro: w_e * 2^(-|t_e - t| / half_life_hours) summed over the
-- user's events in [t - window, t) and [t, t + window)).
with to_score as (
    select
        send_id,
        user_id,
        sent_ts
    from {{ ref('int_sends__to_score') }}
),

weighted_events as (
    select
        user_id,
        event_ts,
        weight
    from {{ ref('int_events__weighted') }}
),

outcomes as (
    {{ decayed_outcomes('to_score', 'weighted_events') }}
)

select * from outcomes
