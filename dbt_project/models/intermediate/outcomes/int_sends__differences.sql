{{ config(materialized='table') }}
-- Step 3, the difference in differences (eq. 2) of every send and placebo of the batch,
-- before the gap adjustment: delta_y_unadjusted = (Y_post^T - Y_pre^T) - mean over controls
-- of (Y_post^C - Y_pre^C). A row is scored when it has at least min_controls controls (and
-- always at least one).
with to_measure as (
    select * from {{ ref('int_sends__to_measure') }}
),

treated as (
    select * from {{ ref('int_sends__outcomes_treated') }}
),

controls as (
    select
        send_id,
        count(*) as n_controls,
        avg(y_pre) as control_y_pre,
        avg(y_post) as control_y_post
    from {{ ref('int_sends__outcomes_controls') }}
    group by send_id
),

differences as (
    select
        to_measure.send_id,
        to_measure.is_placebo,
        to_measure.gap_bin,
        treated.y_pre,
        treated.y_post,
        coalesce(controls.n_controls, 0) as n_controls,
        controls.control_y_pre,
        controls.control_y_post,
        treated.y_post - treated.y_pre as delta_y_treated,
        controls.control_y_post - controls.control_y_pre as delta_y_control,
        coalesce(controls.n_controls, 0) >= greatest({{ var('min_controls') }}, 1) as is_scored
    from to_measure
    inner join treated
        on treated.send_id = to_measure.send_id
    left join controls
        on controls.send_id = to_measure.send_id
)

select
    *,
    delta_y_treated - delta_y_control as delta_y_unadjusted
from differences
