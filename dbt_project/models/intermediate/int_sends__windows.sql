-- Step 2 (outcomes), the windows: every send before as_of with its pre window
-- [sent_ts - window_hours, sent_ts), its post window [sent_ts, sent_ts + window_hours) and
-- matured_at = sent_ts + window_hours, the first as-of time at which the post window is
-- fully observed.
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
)

select * from windows
