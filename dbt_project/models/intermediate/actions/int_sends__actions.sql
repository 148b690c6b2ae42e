{{ config(materialized='table') }}
-- Step 4, the non-label actions of every send before as_of: its channel, its local hour in
-- the user's timezone ('0'..'23'; 'UTC' when unknown) and its frequency bucket, from the
-- hours since the user's previous send (any send, matured or not; a first send is in the
-- last bucket). Edges come from frequency_bucket_hours: [0, 36) '<36h', [36, 84) '36-84h',
-- [84, 180) '84-180h', [180, inf) '>=180h'.
with sends as (
    select
        send_id,
        user_id,
        message_id,
        channel,
        sent_ts
    from {{ ref('stg_raw__sends') }}
),

users as (
    select
        user_id,
        timezone
    from {{ ref('stg_raw__users') }}
),

with_gap as (
    select
        sends.*,
        coalesce(users.timezone, 'UTC') as timezone,
        {{ hours_between(
            'lag(sends.sent_ts) over (partition by sends.user_id order by sends.sent_ts, sends.send_id)',
            'sends.sent_ts'
        ) }} as hours_since_previous_send
    from sends
    left join users
        on users.user_id = sends.user_id
),

actions as (
    select
        send_id,
        user_id,
        message_id,
        channel,
        cast(hour({{ local_time('sent_ts', 'timezone') }}) as string) as send_hour,
        {{ frequency_bucket('hours_since_previous_send') }} as frequency,
        hours_since_previous_send
    from with_gap
)

select * from actions
