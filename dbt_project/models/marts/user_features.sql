-- Every user known at as_of with what the Python steps need: timezone, country, global
-- holdout flag, matching cell, prior cell, activity hour, activity over the last 28 days and the last send.
with features as (
    select * from {{ ref('int_user_features') }}
),

final as (
    select
        user_id,
        timezone,
        country,
        is_holdout,
        cell,
        prior_cell,
        cast(activity_hour as double) as activity_hour,
        cast(n_events_28d as bigint) as n_events_28d,
        cast(n_goal_28d as bigint) as n_goal_28d,
        cast(active_days_28d as bigint) as active_days_28d,
        last_sent_ts
    from features
)

select * from final
