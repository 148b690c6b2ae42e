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

-- the users' goal events by UTC day (int_user_days: kept by day, so a run does not rescan
-- the window's events)
per_day as (
    select
        cast(user_days.event_day as date) as event_date,
        users.user_group,
        sum(user_days.n_goal) as goal_events,
        count(*) as goal_users,
        sum(user_days.goal_value) as gmv
    from {{ ref('int_user_days') }} as user_days
    inner join users
        on users.user_id = user_days.user_id
    where
        user_days.n_goal > 0
        and user_days.event_day >= {{ as_of() }} - interval {{ var('report_window_days') | int }} day
    group by user_days.event_day, users.user_group
),

-- every day of the window from the first event on, for every group: a day without a goal
-- event is a row of zeros, not a missing row (BI averages rows)
days as (
    select cast(window_days.range as date) as event_date
    from {{ day_series(
        "cast(greatest(" ~ as_of() ~ " - interval " ~ (var('report_window_days') | int) ~ " day, "
        ~ "(select min(event_day) from " ~ ref('int_user_days') ~ ")) as timestamp)",
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
