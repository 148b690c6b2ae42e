-- Step 1 of the method (event weights), the followed person-time. An event at t is followed
-- when a goal event of its user comes in (t, t + weight_window_hours], that is when
-- t is in [goal_ts - weight_window_hours, goal_ts) for one of the user's goals. Per goal, the
-- part of that interval not already covered by the user's previous goal,
-- [followed_from, goal_ts) with followed_from = max(goal_ts - weight_window_hours, previous
-- goal_ts): these intervals are disjoint and their union is the time in which the user's
-- events are followed. event_weights_history clips them to each weights date's horizon.
with goals as (
    {{ goal_events('event_ts < ' ~ as_of()) }}
),

intervals as (
    {{ followed_intervals('goals') }}
)

select * from intervals
