-- Unless var goal_weight sets it, the goal event weighs max(1, the largest other weight) at
-- every weights date, and there is exactly one goal row per date.
{%- if var('goal_weight', none) is none %}
with per_date as (
    select
        weights_as_of,
        count(*) filter (where is_goal) as goal_rows,
        max(weight) filter (where is_goal) as goal_weight,
        max(weight) filter (where not is_goal) as best_proxy
    from {{ ref('event_weights_history') }}
    group by weights_as_of
)

select *
from per_date
where
    goal_rows != 1
    or abs(goal_weight - greatest(1.0, coalesce(best_proxy, 1.0))) > 1e-12
{%- else %}
select 1 as ok where false
{%- endif %}
