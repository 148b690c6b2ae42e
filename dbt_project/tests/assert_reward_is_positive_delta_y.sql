-- reward = 1 if delta_y > 0 else 0 for scored sends; null for unscored ones.
select *
from {{ ref('send_outcomes') }}
where
    (is_scored and reward is distinct from cast(delta_y > 0 as integer))
    or (not is_scored and reward is not null)
    or (is_scored and n_controls < greatest({{ var('min_controls') }}, 1))
