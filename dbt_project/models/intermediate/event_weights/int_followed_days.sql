{{ config(
    materialized=day_table(),
    incremental_strategy='delete+insert',
    unique_key='event_day',
    on_schema_change='sync_all_columns',
    pre_hook=day_table_trim(label_cutoff()),
) }}
-- Step 1 of the method (event weights), the followed time by day: per user and UTC day before
-- as_of - weight_window_hours, the microseconds of the day (up to that cutoff) in which an
-- event would be followed, the user's intervals [followed_from, goal_ts) of
-- int_goals__followed_time cut at the day's bounds. event_weight_strata sums the days of the
-- as-of horizon. Kept by day (macros/day_table.sql): a late goal changes the days up to
-- weight_window_hours before it.
{%- set cutoff = label_cutoff() %}
{%- set rebuilt = rebuilt_days(cutoff, var('weight_window_hours')) %}
with days as (
    select event_day from {{ rebuilt_days_relation(rebuilt, cutoff, var('weight_window_hours')) }} as rebuilt
),

-- the followed intervals that can reach the rebuilt days (as in int_goals__followed_time):
-- those of the goals after the first rebuilt day, whose previous goals matter only from
-- weight_window_hours before it
goals as (
    {{ goal_events(after_first_rebuilt_day('event_ts', rebuilt, var('weight_window_hours'))) }}
),

intervals as (
    {{ followed_intervals('goals') }}
),

per_day as (
    select
        intervals.user_id,
        days.event_day,
        sum(
            {{ epoch_us('least(intervals.goal_ts, days.event_day + ' ~ hours(24) ~ ', ' ~ cutoff ~ ')') }}
            - {{ epoch_us('greatest(intervals.followed_from, days.event_day)') }}
        ) as us_followed
    from days
    inner join intervals
        on intervals.goal_ts > days.event_day
        and intervals.followed_from < least(days.event_day + {{ hours(24) }}, {{ cutoff }})
    group by intervals.user_id, days.event_day
)

select
    user_id,
    event_day,
    cast(us_followed as bigint) as us_followed,
    {{ loaded_through() }} as loaded_through
from per_day
