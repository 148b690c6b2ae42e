-- Sends in the min_days_before_repeat days before as_of, for the no-repeat rule.
with sends as (
    select * from {{ ref('stg_raw__sends') }}
    where sent_ts >= {{ as_of() }} - interval {{ var('min_days_before_repeat') }} day
),

final as (
    select
        send_id,
        user_id,
        message_id,
        channel,
        sent_ts
    from sends
)

select * from final
