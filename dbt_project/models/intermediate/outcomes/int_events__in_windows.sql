{{ config(materialized='table') }}
-- Step 2, the events that can fall in a pre or post window of this run's batch
-- ([min pre_start, max post_end)). Their weight w_e depends on the send (the weights of its
-- weights_as_of) and is joined in the decayed_outcomes macro.
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

in_windows as (
    select
        events.user_id,
        events.event_name,
        events.event_ts
    from events
    inner join bounds
        on bounds.first_ts <= events.event_ts
        and bounds.last_ts > events.event_ts
)

select * from in_windows
