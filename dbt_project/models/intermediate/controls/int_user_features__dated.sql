{{ config(
    materialized=sliced_table(),
    slice_from='int_sends__to_score',
    slice_by="date_trunc('day', sent_ts)",
) }}
-- Step 3 (controls), the users at each feature date d this run needs: d = as_of (for the
-- Python steps, int_user_features) and d = the day of each send of the batch,
-- date_trunc('day', sent_ts), so that a send's controls are matched on behaviour before the
-- send (pre-treatment) and do not depend on which run measured it.
--
-- At d: every user with a users or consents row, or an event before d; timezone (default
-- 'UTC') and country (latest rows), the global holdout flag, activity over [d - feature_window_days, d),
-- standardised distance features (z-scores over the users of d) and the matching cell.
-- Prior cell (the empirical-Bayes priors' cells): the local activity hour's bin x the lower or
-- upper half of the users by n_events_28d, labelled like 'h2/n1' ('h-' without events).
-- Cell (coarsened exact matching): UTC offset of the timezone at d x goal-or-not in the feature window
-- x activity bucket, labelled like 'utc+05:30/g1/a03'. The activity bucket splits each
-- (offset, goal) group into round(size / cell_size) equal-size buckets ordered by
-- n_events_28d, so cells hold about cell_size users. Inside a cell, controls are the nearest
-- by Euclidean distance on the z-scores of ln(1 + n_events_28d), ln(1 + n_goal_28d),
-- active_days_28d and days_since_last_event (capped at feature_window_days; the *_28d columns keep
-- their names whatever the window).
-- Built one slice of feature dates at a time (macros/sliced_table.sql, measure_slice_sends): a
-- date's rows depend only on the data before it and on the users of that date.
{%- set feature_days = var('feature_window_days') | int %}
with feature_dates as (
    select feature_date
    from (
        select cast({{ as_of() }} as timestamp) as feature_date
        union
        select distinct date_trunc('day', sent_ts) as feature_date
        from {{ ref('int_sends__to_score') }}
    ) as all_dates
    where {{ in_slice('feature_date') }}
),

users as (
    select * from {{ ref('stg_raw__users') }}
),

consents as (
    select * from {{ ref('stg_raw__consents') }}
),

sends as (
    select * from {{ ref('stg_raw__sends') }}
),

-- one row per user and UTC day with events
user_days as (
    select * from {{ ref('int_user_days') }}
),

activity as (
    select
        feature_dates.feature_date,
        user_days.user_id,
        sum(user_days.n_events) as n_events_28d,
        sum(user_days.n_goal) as n_goal_28d,
        count(*) as active_days_28d,
        max(user_days.last_event_ts) as last_event_ts,
        sum(user_days.sin_hour) as sin_hour,
        sum(user_days.cos_hour) as cos_hour
    from feature_dates
    inner join user_days
        on user_days.event_day >= feature_dates.feature_date - interval {{ feature_days }} day
        and user_days.event_day < feature_dates.feature_date
    group by feature_dates.feature_date, user_days.user_id
),

first_seen as (
    select
        user_id,
        min(first_event_ts) as first_seen_ts
    from user_days
    group by user_id
),

known_users as (
    select
        feature_dates.feature_date,
        listed.user_id
    from (
        select user_id from users
        union
        select user_id from consents
    ) as listed
    cross join feature_dates
    union
    select
        feature_dates.feature_date,
        first_seen.user_id
    from feature_dates
    inner join first_seen
        on first_seen.first_seen_ts < feature_dates.feature_date
),

last_sends as (
    select
        feature_dates.feature_date,
        sends.user_id,
        max(sends.sent_ts) as last_sent_ts
    from feature_dates
    inner join sends
        on sends.sent_ts < feature_dates.feature_date
    group by feature_dates.feature_date, sends.user_id
),

features as (
    select
        known_users.feature_date,
        known_users.user_id,
        coalesce(users.timezone, 'UTC') as timezone,
        users.country,
        md5(known_users.user_id) as user_hash,
        {{ is_holdout('known_users.user_id') }} as is_holdout,
        coalesce(activity.n_events_28d, 0) as n_events_28d,
        coalesce(activity.n_goal_28d, 0) as n_goal_28d,
        coalesce(activity.active_days_28d, 0) as active_days_28d,
        coalesce(
            least(
                {{ hours_between('activity.last_event_ts', 'known_users.feature_date') }} / 24.0,
                {{ feature_days }}
            ),
            {{ feature_days }}
        ) as days_since_last_event,
        activity.sin_hour,
        activity.cos_hour,
        last_sends.last_sent_ts
    from known_users
    left join users
        on users.user_id = known_users.user_id
    left join activity
        on activity.user_id = known_users.user_id
        and activity.feature_date = known_users.feature_date
    left join last_sends
        on last_sends.user_id = known_users.user_id
        and last_sends.feature_date = known_users.feature_date
),

timezone_offsets as (
    select
        feature_date,
        timezone,
        cast(round(
            {{ hours_between('feature_date', local_time('feature_date', 'timezone')) }} * 60
        ) as integer) as utc_offset_minutes
    from (
        select distinct
            feature_date,
            timezone
        from features
    )
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
            ({{ expression }} - avg({{ expression }}) over (partition by features.feature_date))
            / nullif(stddev_pop({{ expression }}) over (partition by features.feature_date), 0),
            0.0
        ) as {{ name }},
        {%- endfor %}
        count(*) over (
            partition by features.feature_date, timezone_offsets.utc_offset_minutes, features.n_goal_28d > 0
        ) as group_size,
        row_number() over (
            partition by features.feature_date, timezone_offsets.utc_offset_minutes, features.n_goal_28d > 0
            order by features.n_events_28d, features.active_days_28d, features.user_hash, features.user_id
        ) as activity_rank,
        ntile(2) over (
            partition by features.feature_date
            order by features.n_events_28d, features.user_hash, features.user_id
        ) as activity_half
    from features
    inner join timezone_offsets
        on timezone_offsets.feature_date = features.feature_date
        and timezone_offsets.timezone = features.timezone
),

-- the activity hour: the circular mean of the events' hours, moved to local time by the UTC
-- offset at d (null without events)
with_hour as (
    select
        * {{ star_except() }} (sin_hour, cos_hour),
        case
            when n_events_28d > 0
                then ((degrees(atan2(sin_hour, cos_hour)) / 15 + utc_offset_minutes / 60) % 24 + 24) % 24
        end as activity_hour
    from standardised
),

celled as (
    select
        * {{ star_except() }} (group_size, activity_rank, activity_half),
        printf(
            'utc%s%02d:%02d/g%d/a%02d',
            case when utc_offset_minutes < 0 then '-' else '+' end,
            {{ int_div('abs(utc_offset_minutes)', 60) }},
            abs(utc_offset_minutes) % 60,
            cast(n_goal_28d > 0 as integer),
            cast(floor(
                (activity_rank - 1) * greatest(1, round(group_size / {{ var('cell_size') }}))
                / group_size
            ) as integer)
        ) as cell,
        -- the prior cell: the behaviour that predicts preferences (send-time products put the
        -- preferred hour near the active hours; light users tire sooner): activity_hour_bins
        -- equal bins of the local day, and the lower or upper half of the day's activity
        'h' || coalesce(
            cast(cast(floor(activity_hour * {{ var('activity_hour_bins') }} / 24) as integer) as string), '-'
        ) || '/n' || activity_half as prior_cell
    from with_hour
)

select * from celled
