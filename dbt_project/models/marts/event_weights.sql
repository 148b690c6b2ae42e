-- Step 1: the event weights of this run's as_of, w_e = ln(P(e | Goal) / P(e | no Goal)) per
-- event name over the rolling horizon [as_of - weight_horizon_days, as_of - weight_window_hours)
-- (computed, smoothed and frozen in event_weights_history).
select
    event_name,
    n_events,
    n_followed,
    n_not_followed,
    p_given_goal,
    p_given_no_goal,
    weight
from {{ ref('event_weights_history') }}
where weights_as_of = {{ as_of() }}
