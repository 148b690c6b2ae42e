{{ config(materialized='table') }}
-- Step 3 (controls), the users: every user known at as_of (from users, events or consents),
-- with timezone (default 'UTC') and country, the global holdout flag, activity features over
-- the 28 days before as_of, standardised distance features, and the matching cell.
--
-- Cell (coarsened exact matching): UTC offset of the timezone at as_of x goal-or-not in
-- 28 days x activity bucket, labelled like 'utc+05:30/g1/a03'. The activity bucket splits each (offset, goal)
-- group into round(size / cell_size) equal-size buckets ordered by n_events_28d, so cells hold
-- about cell_size users. Inside a cell, controls are the nearest by Euclidean distance on the
-- z-scores of ln(1 + n_events_28d), ln(1 + n_goal_28d), active_days_28d and
-- days_since_last_event (capped at 28).
{%- set feature_days = 28 %}
with users as (
    select * from {{ ref('stg_raw__users') }}
),

events as (
    select * from {{ ref('stg_raw__events') }}
),

consents as (
    select * from {{ ref('stg_raw__consents') }}
),

sends as (
    select * from {{ ref('stg_raw__sends') }}
),

known_users as (
    select user_id from users
    union
    select user_id from events
    union
    select user_id from consents
),

activity as (
    select
        user_id,
        count(*) as n_events_28d,
        count(*) filter (where event_name = '{{ var("goal_event") }}') as n_goal_28d,
        count(distinct cast(event_ts as date)) as active_days_28d,
        max(event_ts) as last_event_ts
    from events
    where event_ts >= {{ as_of() }} - interval {{ feature_days }} day
    group by user_id
),

last_sends as (
    select
        user_id,
        max(sent_ts) as last_sent_ts
    from sends
    group by user_id
),

features as (
    select
        known_users.user_id,
        coalesce(users.timezone, 'UTC') as timezone,
        users.country,
        md5(known_users.user_id) as user_hash,
        {{ is_holdout('known_users.user_id') }} as is_holdout,
        coalesce(activity.n_events_28d, 0) as n_events_28d,
        coalesce(activity.n_goal_28d, 0) as n_goal_28d,
        coalesce(activity.active_days_28d, 0) as active_days_28d,
        coalesce(
            least({{ hours_between('activity.last_event_ts', as_of()) }} / 24.0, {{ feature_days }}),
            {{ feature_days }}
        ) as days_since_last_event,
        last_sends.last_sent_ts
    from known_users
    left join users
        on users.user_id = known_users.user_id
    left join activity
        on activity.user_id = known_users.user_id
    left join last_sends
        on last_sends.user_id = known_users.user_id
),

timezone_offsets as (
    select
        timezone,
        cast(round(
            {{ hours_between(as_of(), "timezone(timezone, cast(" ~ as_of() ~ " as timestamptz))") }} * 60
        ) as integer) as utc_offset_minutes
    from (select distinct timezone from features)
),

standardised as (
    select
        features.*,
        timezone_offsets.utc_offset_minutes,
        {%- for name, expression in [
            ('z_events', 'ln(1 + n_events_28d)'),
            ('z_goals', 'ln(1 + n_goal_28d)'),
            ('z_active_days', 'active_days_28d'),
            ('z_recency', 'days_since_last_event'),
        ] %}
        coalesce(
            ({{ expression }} - avg({{ expression }}) over ())
            / nullif(stddev_pop({{ expression }}) over (), 0),
            0.0
        ) as {{ name }},
        {%- endfor %}
        count(*) over (partition by utc_offset_minutes, n_goal_28d > 0) as group_size,
        row_number() over (
            partition by utc_offset_minutes, n_goal_28d > 0
            order by n_events_28d, active_days_28d, user_hash, features.user_id
        ) as activity_rank
    from features
    inner join timezone_offsets
        on timezone_offsets.timezone = features.timezone
),

celled as (
    select
        * exclude (group_size, activity_rank),
        printf(
            'utc%s%02d:%02d/g%d/a%02d',
            case when utc_offset_minutes < 0 then '-' else '+' end,
            abs(utc_offset_minutes) // 60,
            abs(utc_offset_minutes) % 60,
            cast(n_goal_28d > 0 as integer),
            cast(floor(
                (activity_rank - 1) * greatest(1, round(group_size / {{ var('cell_size') }}))
                / group_size
            ) as integer)
        ) as cell
    from standardised
)

select * from celled
