-- Step 1 of the method (event weights), the labelling: every event that a weight horizon of
-- this run can use, event_ts in [d - weight_horizon_days, as_of - weight_window_hours) for the
-- earliest weights date d of the run (event_weights_history), so that its follow window is
-- fully observed, and whether a goal event of the same user occurs in
-- [event_ts, event_ts + weight_window_hours]. A goal event is followed by itself. The label
-- does not depend on as_of: a goal within the follow window is always before as_of.
-- The next goal at or after each event comes from one ASOF join (no pairwise join).
with first_weights_date as (
    select least(min(weights_as_of), {{ as_of() }}) as weights_as_of
    from {{ ref('int_sends__to_score') }}
),

events as (
    select
        user_id,
        event_name,
        event_ts
    from {{ ref('stg_raw__events') }}
    where event_ts >= (select weights_as_of from first_weights_date)
        - {{ hours(var('weight_horizon_days') ~ ' * 24') }}
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
    where event_name = '{{ var("goal_event") }}'
),

with_next_goal as (
    select
        observed.user_id,
        observed.event_name,
        observed.event_ts,
        goals.goal_ts as next_goal_ts
    from observed
    asof left join goals
        on goals.user_id = observed.user_id
        and goals.goal_ts >= observed.event_ts
),

labelled as (
    select
        user_id,
        event_name,
        event_ts,
        next_goal_ts,
        coalesce(
            next_goal_ts <= event_ts + {{ hours(var('weight_window_hours')) }}, false
        ) as is_followed
    from with_next_goal
)

select * from labelled
