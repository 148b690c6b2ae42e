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

final as (
    select
        per_day.event_date,
        per_day.user_group,
        cast(group_sizes.n_users as bigint) as n_users,
        cast(per_day.goal_events as bigint) as goal_events,
        cast(per_day.goal_users as bigint) as goal_users,
        cast(per_day.gmv as double) as gmv
    from per_day
    inner join group_sizes
        on group_sizes.user_group = per_day.user_group
)

select * from final
