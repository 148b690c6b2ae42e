{{ config(materialized='table') }}
-- The method, explained once: docs block method_outcomes (models/method.md).
-- Step 2, the treated user's outcomes: Y_pre and Y_post of eq. (1) around each send of the
-- batch and each placebo (int_sends__to_measure) (decayed_outcomes macro:
-- w_e * 2^(-|t_e - t| / half_life_hours) summed over the user's events in [t - window, t)
-- and [t, t + window)), with the weights of the send's weights_as_of.
with to_score as (
    select
        send_id,
        user_id,
        sent_ts,
        weights_as_of
    from {{ ref('int_sends__to_measure') }}
),

outcomes as (
    {{ decayed_outcomes('to_score') }}
)

select * from outcomes
