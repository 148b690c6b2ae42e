{{ config(materialized='table') }}
-- Step 3, the controls' outcomes: Y_pre and Y_post of every control user of a send, at the
-- same send time t and with the same formula and weights as the treated user's
-- (decayed_outcomes, the weights of the send's weights_as_of).
with controls as (
    select
        controls.send_id,
        controls.control_user_id as user_id,
        controls.sent_ts,
        to_score.weights_as_of
    from {{ ref('int_sends__controls') }} as controls
    inner join {{ ref('int_sends__to_score') }} as to_score
        on to_score.send_id = controls.send_id
),

events as (
    select
        user_id,
        event_name,
        event_ts
    from {{ ref('int_events__in_windows') }}
),

weights as (
    select
        weights_as_of,
        event_name,
        weight
    from {{ ref('event_weights_history') }}
),

outcomes as (
    {{ decayed_outcomes('controls', 'events', 'weights') }}
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
