{{ config(materialized='table') }}
-- Step 2, what this run measures: the batch's sends (int_sends__to_score) and their placebos
-- (int_sends__placebos), one row each with its gap bin. A placebo goes through the same
-- controls and outcomes as a send; send_outcomes keeps the sends, placebo_outcomes the placebos.
with sends as (
    select
        send_id,
        user_id,
        sent_ts,
        matured_at,
        weights_as_of,
        gap_bin,
        false as is_placebo
    from {{ ref('int_sends__to_score') }}
),

placebos as (
    select
        send_id,
        user_id,
        sent_ts,
        matured_at,
        weights_as_of,
        gap_bin,
        true as is_placebo
    from {{ ref('int_sends__placebos') }}
)

select * from sends
union all
select * from placebos
