{{ config(materialized='table') }}
-- Step 3 (controls and placebos), each user's send times (microseconds since the epoch, one
-- list per user) that can fall in the pre or post window of a send of the batch: candidates
-- are checked against one list per user, never with a pairwise join of sends.
with batch_span as (
    select
        min(sent_ts) - {{ hours(var('window_hours')) }} as first_ts,
        max(sent_ts) + {{ hours(var('window_hours')) }} as last_ts
    from {{ ref('int_sends__to_score') }}
),

send_times as (
    select
        sends.user_id,
        {{ list_agg(epoch_us('sends.sent_ts')) }} as sent_us
    from {{ ref('stg_raw__sends') }} as sends
    inner join batch_span
        on batch_span.first_ts <= sends.sent_ts
        and batch_span.last_ts > sends.sent_ts
    group by sends.user_id
)

select * from send_times
