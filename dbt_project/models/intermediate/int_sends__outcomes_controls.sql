{{ config(materialized='table') }}
-- Step 3, the controls' outcomes: Y_pre and Y_post of every control user of a send, at the
-- same send time t and with the same formula as the treated user's (decayed_outcomes).
with controls as (
    select
        send_id,
        control_user_id as user_id,
        sent_ts
    from {{ ref('int_sends__controls') }}
),

weighted_events as (
    select
        user_id,
        event_ts,
        weight
    from {{ ref('int_events__weighted') }}
),

outcomes as (
    {{ decayed_outcomes('controls', 'weighted_events') }}
),

renamed as (
    select
        send_id,
        user_id as control_user_id,
        y_pre,
        y_post
    from outcomes
)

select * from renamed
