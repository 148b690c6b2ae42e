-- The lift for BI: per day before as_of (the last report_window_days) and group (agentic:
-- not in the holdout; holdout), the group's users, goal events, users with a goal event and
-- GMV (sum of the goal events' value). Per-user rates and their difference between the groups
-- are the incremental effect of the agentic sends, as in the paper's Table 1.
with users as (
    select
        user_id,
        case when is_holdout then 'holdout' else 'agentic' end as user_group
    from {{ ref('user_features') }}
),

group_sizes as (
    select
        user_group,
        count(*) as n_users
    from users
    group by user_group
),

goals as (
    select
        events.user_id,
        cast(events.event_ts as date) as event_date,
        events.value
    from {{ ref('stg_raw__events') }} as events
    where
        events.event_name = {{ sql_text(var('goal_event')) }}
        and events.event_ts >= {{ as_of() }} - interval {{ var('report_window_days') | int }} day
),

per_day as (
    select
        goals.event_date,
        users.user_group,
        count(*) as goal_events,
        count(distinct goals.user_id) as goal_users,
        coalesce(sum(goals.value), 0) as gmv
    from goals
    inner join users
        on users.user_id = goals.user_id
    group by goals.event_date, users.user_group
),

-- every day of the window from the first event on, for every group: a day without a goal
-- event is a row of zeros, not a missing row (BI averages rows)
days as (
    select cast(window_days.range as date) as event_date
    from {{ day_series(
        "cast(greatest(" ~ as_of() ~ " - interval " ~ (var('report_window_days') | int) ~ " day, "
        ~ "(select date_trunc('day', min(event_ts)) from " ~ ref('stg_raw__events') ~ ")) as timestamp)",
        as_of(),
    ) }} as window_days
),

final as (
    select
        days.event_date,
        group_sizes.user_group,
        cast(group_sizes.n_users as bigint) as n_users,
        cast(coalesce(per_day.goal_events, 0) as bigint) as goal_events,
        cast(coalesce(per_day.goal_users, 0) as bigint) as goal_users,
        cast(coalesce(per_day.gmv, 0) as double) as gmv
    from days
    cross join group_sizes
    left join per_day
        on per_day.event_date = days.event_date
        and per_day.user_group = group_sizes.user_group
)

select * from final
