-- Every raw consent row, typed, with the reason it breaks the contract (null when it does not).
with source as (
    select * from {{ source('raw', 'consents') }}
),

renamed as (
    select
        ---------- ids
        {{ clean_text('user_id') }} as user_id,
        lower({{ clean_text('channel') }}) as channel,
        ---------- facts
        {{ to_boolean('opted_in') }} as opted_in,
        {{ utc_timestamp('updated_ts') }} as updated_ts,
        ---------- lineage
        _file,
        _row,
        {{ contract_violation(
            required=['user_id', 'channel', 'opted_in', 'updated_ts'],
            timestamps=['updated_ts'],
            booleans=['opted_in'],
        ) }} as reject_reason
    from source
)

select * from renamed
