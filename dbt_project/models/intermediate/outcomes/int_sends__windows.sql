-- Step 2 (outcomes), the windows: every send before as_of with its pre window
-- [sent_ts - window_hours, sent_ts), its post window [sent_ts, sent_ts + window_hours) and
-- matured_at = sent_ts + window_hours, the first as-of time at which the post window is
-- fully observed. weights_as_of is the as-of time whose event weights score the send: the
-- first midnight at or after matured_at (the daily run that first sees it matured), so the
-- outcome does not depend on which run measured it (capped at as_of for an off-midnight run).
with sends as (
    select * from {{ ref('stg_raw__sends') }}
),

windows as (
    select
        send_id,
        user_id,
        message_id,
        channel,
        sent_ts,
        sent_ts - {{ hours(var('window_hours')) }} as pre_start,
        sent_ts + {{ hours(var('window_hours')) }} as post_end,
        sent_ts + {{ hours(var('window_hours')) }} as matured_at
    from sends
),

with_weights_date as (
    select
        *,
        least(
            case
                when matured_at = date_trunc('day', matured_at) then matured_at
                else date_trunc('day', matured_at) + interval 1 day
            end,
            {{ as_of() }}
        ) as weights_as_of
    from windows
)

select * from with_weights_date
