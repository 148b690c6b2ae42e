-- Valid sends before as_of (send_id is unique: later duplicates are quarantined upstream).
with sends as (
    select * from {{ ref('base_raw__sends') }}
    where reject_reason is null
),

renamed as (
    select
        send_id,
        user_id,
        message_id,
        channel,
        sent_ts
    from sends
)

select * from renamed
where sent_ts < {{ as_of() }}
