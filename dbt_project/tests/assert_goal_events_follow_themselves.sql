-- A goal event is followed by itself (its follow window [t, t + weight_window] contains it).
select *
from {{ ref('int_events__goal_followed') }}
where event_name = '{{ var("goal_event") }}'
    and not is_followed
