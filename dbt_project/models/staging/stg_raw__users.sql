-- One row per user: the latest valid row known at as_of (updated_ts < as_of, or no
-- updated_ts). Latest = greatest updated_ts (a row without one is older than any dated row),
-- then the last landed (by _file, _row).
with users as (
    select * from {{ ref('base_raw__users') }}
    where
        reject_reason is null
        and (updated_ts is null or updated_ts < {{ as_of() }})
),

latest as (
    select
        user_id,
        timezone,
        country,
        updated_ts
    from users
    qualify row_number() over (
        partition by user_id
        order by updated_ts desc nulls last, _file desc, _row desc
    ) = 1
)

select * from latest
