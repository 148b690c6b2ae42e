-- One row per (user_id, channel): the latest valid consent with updated_ts < as_of (ties:
-- the last landed, by _file, _row).
with consents as (
    select * from {{ ref('base_raw__consents') }}
    where
        reject_reason is null
        and updated_ts < {{ as_of() }}
),

latest as (
    select
        user_id,
        channel,
        opted_in,
        updated_ts
    from consents
    qualify row_number() over (
        partition by user_id, channel
        order by updated_ts desc, _file desc, _row desc
    ) = 1
)

select * from latest
