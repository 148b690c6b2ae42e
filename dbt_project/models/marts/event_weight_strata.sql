-- The per-user strata of the as-of event weights: per (user, event name) the user's events of
-- the as-of horizon that are / are not followed by a goal, the user's followed time in it and
-- the horizon's length (macro event_weight_strata). event_weights sums exactly these rows;
-- this table lets intervals resample users (`nudgeflow evaluate measurement`, the report).
with dates as (
    select {{ as_of() }} as weights_as_of
),

horizons as (
    {{ weight_horizons('dates') }}
),

strata as (
    {{ event_weight_strata('horizons') }}
)

select
    cast(weights_as_of as timestamp) as weights_as_of,
    user_id,
    event_name,
    cast(n_followed as bigint) as n_followed,
    cast(n_not_followed as bigint) as n_not_followed,
    cast(us_followed as bigint) as us_followed,
    cast(horizon_us as bigint) as horizon_us
from strata
