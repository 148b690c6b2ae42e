-- Step 1 of the method (event weights), the followed person-time. An event at t is followed
-- when a goal event of its user comes in (t, t + weight_window_hours], that is when
-- t is in [goal_ts - weight_window_hours, goal_ts) for one of the user's goals. Per goal, the
-- part of that interval not already covered by the user's previous goal,
-- [followed_from, goal_ts) with followed_from = max(goal_ts - weight_window_hours, previous
-- goal_ts): these intervals are disjoint and their union is the time in which the user's
-- events are followed. event_weights_history clips them to each weights date's horizon.
with goals as (
    select
        user_id,
        event_ts as goal_ts
    from {{ ref('stg_raw__events') }}
    where
        event_name = {{ sql_text(var('goal_event')) }}
        and event_ts < {{ as_of() }}
),

with_previous as (
    select
        user_id,
        goal_ts,
        lag(goal_ts) over (partition by user_id order by goal_ts) as previous_goal_ts
    from goals
)

select
    user_id,
    goal_ts,
    greatest(
        goal_ts - {{ hours(var('weight_window_hours')) }},
        coalesce(previous_goal_ts, goal_ts - {{ hours(var('weight_window_hours')) }})
    ) as followed_from
from with_previous
