-- The current catalogue: the valid rows of the messages snapshot file that sorts last.
with messages as (
    select * from {{ ref('stg_raw__messages') }}
    where is_current
),

final as (
    select
        message_id,
        channel,
        active,
        valid_from,
        valid_to,
        countries,
        title,
        body
    from messages
)

select * from final
