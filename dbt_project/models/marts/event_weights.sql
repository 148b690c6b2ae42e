-- Step 1: the event weights of this run's as_of, w_e = ln(P(e | Goal) / P(e | no Goal)) per
-- event name over the rolling horizon [as_of - weight_horizon_days, as_of - weight_window_hours)
-- (estimated within users, pooled and frozen in event_weights_history).
select
    event_name,
    is_goal,
    n_events,
    n_followed,
    n_not_followed,
    mh_followed,
    mh_not_followed,
    llr,
    weight
from {{ ref('event_weights_history') }}
where weights_as_of = {{ as_of() }}
