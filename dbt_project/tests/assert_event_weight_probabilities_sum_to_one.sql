-- With Laplace smoothing, P(. | Goal) and P(. | no Goal) are distributions over the event names.
select
    sum(p_given_goal) as total_given_goal,
    sum(p_given_no_goal) as total_given_no_goal
from {{ ref('event_weights') }}
having abs(sum(p_given_goal) - 1) > 1e-9
    or abs(sum(p_given_no_goal) - 1) > 1e-9
