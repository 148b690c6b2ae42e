-- Step 1 of the method (event weights), the labelling: every event with
-- event_ts < as_of - weight_window_hours
-- (so that its follow window is fully observed), and whether a goal event of the same user
-- occurs in (event_ts, event_ts + weight_window_hours]: strictly after the event, so that a
-- goal event does not follow itself, nor an event at the goal's own timestamp.
-- The label does not depend on as_of; event_weights_history picks each weights date's
-- horizon out of it. The whole history is labelled (one ASOF join, about 0.5 s per million
-- events): a lower bound computed from the batch in SQL made DuckDB plan the ASOF join
-- about 150 times slower.
with events as (
    select
        user_id,
        event_name,
        event_ts
    from {{ ref('stg_raw__events') }}
),

observed as (
    select * from events
    where event_ts < {{ as_of() }} - {{ hours(var('weight_window_hours')) }}
),

goals as (
    select
        user_id,
        event_ts as goal_ts
    from events
    where event_name = {{ sql_text(var('goal_event')) }}
),

with_next_goal as (
    {{ next_goal('observed', 'goals') }}
),

labelled as (
    select
        user_id,
        event_name,
        event_ts,
        next_goal_ts,
        {{ is_followed('next_goal_ts', 'event_ts') }} as is_followed
    from with_next_goal
)

select * from labelled
