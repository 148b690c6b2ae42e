-- Every raw consent row, typed, with the reason it breaks the contract (null when it does not).
-- Fail safe: a row whose opted_in is missing or unparsable (`off`, `2`) still counts, as an
-- opt-out, with a note in marts.quarantine: a user who tried to opt out is never left opted in
-- by an earlier row.
with source as (
    select * from {{ source('raw', 'consents') }}
),

renamed as (
    select
        ---------- ids
        {{ clean_text('user_id') }} as user_id,
        lower({{ clean_text('channel') }}) as channel,
        ---------- facts
        coalesce({{ to_boolean('opted_in') }}, false) as opted_in,
        {{ utc_timestamp('updated_ts') }} as updated_ts,
        ---------- lineage
        _file,
        _row,
        {{ contract_violation(
            required=['user_id', 'channel', 'updated_ts'],
            timestamps=['updated_ts'],
        ) }} as reject_reason,
        case
            when {{ clean_text('opted_in') }} is null then 'missing opted_in: treated as opted out'
            when {{ to_boolean('opted_in') }} is null
                then 'unparsable boolean opted_in: ' || {{ shown('opted_in') }} || ': treated as opted out'
        end as note
    from source
)

select * from renamed
