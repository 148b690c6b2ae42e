{{ config(materialized='table') }}
-- Step 2, eq. (1)'s w_e: the events that can fall in a pre or post window of this run's
-- batch, each with the weight of its event name from event_weights (0 for a name without
-- a weight row, e.g. one never seen in the weight horizon).
with bounds as (
    select
        min(pre_start) as first_ts,
        max(post_end) as last_ts
    from {{ ref('int_sends__to_score') }}
),

events as (
    select
        user_id,
        event_name,
        event_ts
    from {{ ref('stg_raw__events') }}
),

weights as (
    select
        event_name,
        weight
    from {{ ref('event_weights') }}
),

weighted as (
    select
        events.user_id,
        events.event_name,
        events.event_ts,
        coalesce(weights.weight, 0.0) as weight
    from events
    inner join bounds
        on events.event_ts >= bounds.first_ts
        and events.event_ts < bounds.last_ts
    left join weights
        on weights.event_name = events.event_name
)

select * from weighted
