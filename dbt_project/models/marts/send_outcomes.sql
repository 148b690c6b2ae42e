{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='fail',
) }}
-- The method, explained once: docs block method_treatment_effect (models/method.md).
-- Step 3: the individual treatment effect of every matured send, difference in differences
-- (eq. 2), less (with gap_adjustment) the gap adjustment of the send's weights date and gap bin:
--   delta_y = (Y_post^T - Y_pre^T) - mean over controls of (Y_post^C - Y_pre^C) - adjustment
-- reward = 1 if delta_y > 0 else 0. A send is scored when it has at least min_controls
-- controls (and always at least one); an unscored send keeps reward null.
-- Incremental, append-only on send_id: each run adds the sends of int_sends__to_score
-- (matured, not yet here), so a rerun adds nothing and an outcome, once measured, is frozen.
with to_score as (
    select * from {{ ref('int_sends__to_score') }}
    {%- if is_incremental() %}
    where send_id not in (select send_id from {{ this }})
    {%- endif %}
),

differences as (
    select * from {{ ref('int_sends__differences') }}
    where not is_placebo
),

-- the adjustment subtracted: the measured one with gap_adjustment, else 0 (still recorded in
-- gap_adjustments)
adjustments as (
    select
        weights_as_of,
        gap_bin,
        {{ 'adjustment' if var('gap_adjustment') else '0.0' }} as adjustment
    from {{ ref('gap_adjustments') }}
),

rewarded as (
    select
        to_score.send_id,
        to_score.user_id,
        to_score.message_id,
        to_score.channel,
        to_score.sent_ts,
        to_score.matured_at,
        to_score.weights_as_of,
        cast(differences.y_pre as double) as y_pre,
        cast(differences.y_post as double) as y_post,
        cast(differences.n_controls as integer) as n_controls,
        cast(differences.control_y_pre as double) as control_y_pre,
        cast(differences.control_y_post as double) as control_y_post,
        cast(differences.delta_y_treated as double) as delta_y_treated,
        cast(differences.delta_y_control as double) as delta_y_control,
        differences.gap_bin,
        cast(differences.delta_y_unadjusted as double) as delta_y_unadjusted,
        cast(coalesce(adjustments.adjustment, 0.0) as double) as gap_adjustment,
        cast(differences.delta_y_unadjusted - coalesce(adjustments.adjustment, 0.0) as double) as delta_y,
        cast(
            case
                when differences.is_scored
                    then differences.delta_y_unadjusted - coalesce(adjustments.adjustment, 0.0) > 0
            end as integer
        ) as reward,
        differences.is_scored
    from to_score
    inner join differences
        on differences.send_id = to_score.send_id
    left join adjustments
        on adjustments.weights_as_of = to_score.weights_as_of
        and adjustments.gap_bin = differences.gap_bin
)

select * from rewarded
