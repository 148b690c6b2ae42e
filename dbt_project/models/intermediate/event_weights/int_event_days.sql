{{ config(
    materialized=day_table(),
    incremental_strategy='delete+insert',
    unique_key='event_day',
    on_schema_change='sync_all_columns',
    pre_hook=day_table_trim(label_cutoff()),
) }}
-- Step 1 of the method (event weights), the labelled events by day: per user, event name and
-- UTC day, the events before as_of - weight_window_hours that are / are not followed by a goal
-- of the same user in (event_ts, event_ts + weight_window_hours] (int_events__goal_followed's
-- label, counted). event_weight_strata sums the days of the as-of horizon. Kept by day
-- (macros/day_table.sql): a late goal relabels the days up to weight_window_hours before it.
{%- set cutoff = label_cutoff() %}
{%- set days = rebuilt_days(cutoff, var('weight_window_hours')) %}
with events as (
    select
        events.user_id,
        events.event_name,
        events.event_ts
    from {{ ref('stg_raw__events') }} as events
    where
        events.event_ts < {{ cutoff }}
        and {{ in_rebuilt_days('events.event_ts', days) }}
),

-- the goals that can follow those events
goals as (
    {{ goal_events(after_first_rebuilt_day('event_ts', days)) }}
),

with_next_goal as (
    {{ next_goal('events', 'goals') }}
),

counted as (
    select
        user_id,
        event_name,
        date_trunc('day', event_ts) as event_day,
        count(*) filter (where {{ is_followed('next_goal_ts', 'event_ts') }}) as n_followed,
        count(*) filter (where not {{ is_followed('next_goal_ts', 'event_ts') }}) as n_not_followed,
        {{ loaded_through() }} as loaded_through
    from with_next_goal
    group by user_id, event_name, date_trunc('day', event_ts)
)

select * from counted
