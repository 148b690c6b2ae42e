{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='fail',
) }}
-- The method, explained once: docs block method_placebos (models/method.md).
-- Placebos, step 3, the gap adjustment per weights date d and gap bin (gap_bin macro): what a
-- send that did nothing scores after such a gap, from the scored placebos that had matured by
-- d and were sent in the last null_window_days before it:
--   adjustment = sum(delta_y_unadjusted) / (placebos + gap_bias_shrinkage)
-- i.e. their mean, shrunk to 0 while a bin has few placebos. send_outcomes subtracts the
-- adjustment of the send's weights date and bin from its difference in differences (delta_y),
-- so that a send after a short gap, whose pre window holds the previous send's effect, is not
-- scored below what it did; like the event weights, it depends on the send's weights date
-- only, not on the run. Rows for the weights dates of the batch and for as_of (the null of
-- today's decisions), every bin (0 placebos: adjustment 0); appended once, then frozen.
with dates as (
    select weights_as_of from (
        select weights_as_of from {{ ref('int_sends__to_score') }}
        union
        select {{ as_of() }} as weights_as_of
    )
    {%- if is_incremental() %}
    where weights_as_of not in (select weights_as_of from {{ this }})
    {%- endif %}
),

bins as (
    {%- for label in gap_bin_labels() %}
    select '{{ label }}' as gap_bin{{ " union all" if not loop.last }}
    {%- endfor %}
),

placebos as (
    select
        gap_bin,
        sent_ts,
        matured_at,
        delta_y_unadjusted
    from {{ ref('placebo_outcomes') }}
    where is_scored
),

by_bin as (
    select
        dates.weights_as_of,
        bins.gap_bin,
        count(placebos.delta_y_unadjusted) as placebos,
        sum(placebos.delta_y_unadjusted) as sum_delta_y
    from dates
    cross join bins
    left join placebos
        on placebos.gap_bin = bins.gap_bin
        and placebos.matured_at <= dates.weights_as_of
        and placebos.sent_ts >= dates.weights_as_of - interval {{ var('null_window_days') | int }} day
    group by dates.weights_as_of, bins.gap_bin
),

adjustments as (
    select
        weights_as_of,
        gap_bin,
        cast(placebos as integer) as placebos,
        cast(sum_delta_y / nullif(placebos, 0) as double) as mean_delta_y,
        cast(coalesce(
            sum_delta_y / nullif(placebos + {{ var('gap_bias_shrinkage') }}, 0), 0.0
        ) as double) as adjustment
    from by_bin
)

select * from adjustments
