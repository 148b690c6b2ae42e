-- The per-user strata of the as-of event weights: per (user, event name) the user's events of
-- the as-of horizon [as_of - weight_horizon_days, as_of - weight_window_hours) that are / are
-- not followed by a goal, the user's followed time in it and the horizon's length: macro
-- event_weight_strata's rows, summed here from the days of the horizon (int_event_days,
-- int_followed_days, kept by day) instead of the labelled history. event_weights_history sums
-- exactly these rows for the as-of date; this table lets intervals resample users
-- (`nudgeflow evaluate measurement`, the report). The horizon starts at a midnight: as_of is one.
{{ require_midnight_as_of() }}
with horizons as (
    {{ weight_horizons('(select ' ~ as_of() ~ ' as weights_as_of) as dates') }}
),

per_user as (
    select
        event_days.user_id,
        event_days.event_name,
        sum(event_days.n_followed) as n_followed,
        sum(event_days.n_not_followed) as n_not_followed
    from {{ ref('int_event_days') }} as event_days
    inner join horizons
        on event_days.event_day >= horizons.horizon_start
        and event_days.event_day < horizons.horizon_end
    group by event_days.user_id, event_days.event_name
),

followed_time as (
    select
        followed_days.user_id,
        sum(followed_days.us_followed) as us_followed
    from {{ ref('int_followed_days') }} as followed_days
    inner join horizons
        on followed_days.event_day >= horizons.horizon_start
        and followed_days.event_day < horizons.horizon_end
    group by followed_days.user_id
)

select
    cast(horizons.weights_as_of as timestamp) as weights_as_of,
    per_user.user_id,
    per_user.event_name,
    cast(per_user.n_followed as bigint) as n_followed,
    cast(per_user.n_not_followed as bigint) as n_not_followed,
    cast(coalesce(followed_time.us_followed, 0) as bigint) as us_followed,
    cast(horizons.horizon_us as bigint) as horizon_us
from per_user
cross join horizons
left join followed_time
    on followed_time.user_id = per_user.user_id
