-- The latest consent per (user, channel) known at as_of; no row means no consent.
with consents as (
    select * from {{ ref('stg_raw__consents') }}
),

final as (
    select
        user_id,
        channel,
        opted_in
    from consents
)

select * from final
