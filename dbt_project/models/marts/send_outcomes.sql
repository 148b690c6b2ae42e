{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='fail',
) }}
-- The method, explained once: docs block method_treatment_effect (models/method.md).
-- Step 3: the individual treatment effect of every matured send, difference in differences
-- (eq. 2): delta_y = (Y_post^T - Y_pre^T) - mean over controls of (Y_post^C - Y_pre^C);
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
        to_score.send_id,
        to_score.user_id,
        to_score.message_id,
        to_score.channel,
        to_score.sent_ts,
        to_score.matured_at,
        to_score.weights_as_of,
        treated.y_pre,
        treated.y_post,
        coalesce(controls.n_controls, 0) as n_controls,
        controls.control_y_pre,
        controls.control_y_post,
        treated.y_post - treated.y_pre as delta_y_treated,
        controls.control_y_post - controls.control_y_pre as delta_y_control,
        coalesce(controls.n_controls, 0) >= greatest({{ var('min_controls') }}, 1) as is_scored
    from to_score
    inner join treated
        on treated.send_id = to_score.send_id
    left join controls
        on controls.send_id = to_score.send_id
),

rewarded as (
    select
        send_id,
        user_id,
        message_id,
        channel,
        sent_ts,
        matured_at,
        weights_as_of,
        cast(y_pre as double) as y_pre,
        cast(y_post as double) as y_post,
        cast(n_controls as integer) as n_controls,
        cast(control_y_pre as double) as control_y_pre,
        cast(control_y_post as double) as control_y_post,
        cast(delta_y_treated as double) as delta_y_treated,
        cast(delta_y_control as double) as delta_y_control,
        cast(delta_y_treated - delta_y_control as double) as delta_y,
        cast(case when is_scored then delta_y_treated - delta_y_control > 0 end as integer) as reward,
        is_scored
    from differences
)

select * from rewarded
