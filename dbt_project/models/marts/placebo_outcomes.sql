{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='fail',
) }}
-- The method, explained once: docs block method_placebos (models/method.md).
-- Placebos, step 2: every measured placebo (int_sends__placebos), its outcomes and its
-- difference in differences, measured like a send and then frozen (append-only on send_id,
-- like send_outcomes). gap_adjustments and null_rewards read them.
with placebos as (
    select * from {{ ref('int_sends__placebos') }}
    {%- if is_incremental() %}
    where send_id not in (select send_id from {{ this }})
    {%- endif %}
),

differences as (
    select * from {{ ref('int_sends__differences') }}
    where is_placebo
),

outcomes as (
    select
        placebos.send_id,
        placebos.source_send_id,
        placebos.user_id,
        placebos.cell,
        placebos.sent_ts,
        placebos.matured_at,
        placebos.weights_as_of,
        placebos.gap_bin,
        cast(differences.y_pre as double) as y_pre,
        cast(differences.y_post as double) as y_post,
        cast(differences.n_controls as integer) as n_controls,
        cast(differences.delta_y_unadjusted as double) as delta_y_unadjusted,
        differences.is_scored
    from placebos
    inner join differences
        on differences.send_id = placebos.send_id
)

select * from outcomes
