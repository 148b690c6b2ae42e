{{ config(
    materialized=day_table(),
    incremental_strategy='delete+insert',
    unique_key='event_day',
    on_schema_change='sync_all_columns',
    pre_hook=day_table_trim(as_of()),
) }}
-- Step 3 (controls), one row per user and UTC day with events before as_of: what
-- int_user_features__dated sums over each feature date's window, computed once for all its
-- dates (and slices): the day's events and goal events (and the goal events' value, for
-- daily_lift), its first and last event time, and the events' UTC hours of day as angles,
-- summed (their circular mean is the activity hour).
-- Kept by day (macros/day_table.sql): a run aggregates the days since the last one and the
-- days of late events, not the history.
{%- set days = rebuilt_days(as_of(), 0, added_columns=['goal_value']) %}
{%- set is_goal = "event_name = " ~ sql_text(var('goal_event')) %}
with events as (
    select events.*
    from {{ ref('stg_raw__events') }} as events
    where {{ in_rebuilt_days('events.event_ts', days) }}
),

user_days as (
    select
        user_id,
        date_trunc('day', event_ts) as event_day,
        count(*) as n_events,
        count(*) filter (where {{ is_goal }}) as n_goal,
        coalesce(sum(value) filter (where {{ is_goal }}), 0) as goal_value,
        min(event_ts) as first_event_ts,
        max(event_ts) as last_event_ts,
        sum(sin(2 * pi() * (hour(event_ts) + minute(event_ts) / 60) / 24)) as sin_hour,
        sum(cos(2 * pi() * (hour(event_ts) + minute(event_ts) / 60) / 24)) as cos_hour,
        {{ loaded_through() }} as loaded_through
    from events
    group by user_id, date_trunc('day', event_ts)
)

select * from user_days
