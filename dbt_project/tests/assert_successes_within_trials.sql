-- 0 <= successes <= trials, trials >= 1.
select *
from {{ ref('action_outcomes') }}
where successes < 0 or successes > trials or trials < 1
