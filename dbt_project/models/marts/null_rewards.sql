-- The method, explained once: docs block method_placebos (models/method.md).
-- Placebos, step 4, the measured null: the reward a send that does nothing gets, from the
-- scored placebos of the last report_window_days, per day, cell (the placebo user's matching
-- cell) and gap bin: placebos, and successes = placebos with
-- delta_y_unadjusted - (the gap bin's adjustment of this run) > 0, i.e. scored like a send
-- today. The Python steps pool the last null_window_days of it into the null that send-or-wait
-- compares with.
with placebos as (
    select * from {{ ref('placebo_outcomes') }}
    where
        is_scored
        and sent_ts >= {{ as_of() }} - interval {{ var('report_window_days') | int }} day
        and sent_ts < {{ as_of() }}
),

adjustments as (
    select * from {{ ref('gap_adjustments') }}
    where weights_as_of = {{ as_of() }}
),

rewards as (
    select
        cast(date_trunc('day', placebos.sent_ts) as date) as sent_date,
        placebos.cell,
        placebos.gap_bin,
        cast(count(*) as integer) as placebos,
        cast(
            count(*) filter (where placebos.delta_y_unadjusted - adjustments.adjustment > 0) as integer
        ) as successes
    from placebos
    inner join adjustments
        on adjustments.gap_bin = placebos.gap_bin
    group by 1, 2, 3
)

select * from rewards
