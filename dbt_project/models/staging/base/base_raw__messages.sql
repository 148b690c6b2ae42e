-- Every raw catalogue row of every snapshot file, typed, with the reason it breaks the
-- contract (null when it does not). message_id is unique within a file: of the otherwise
-- valid rows sharing it, the first (by _row) is kept, later ones are 'duplicate message_id'.
with source as (
    select * from {{ source('raw', 'messages') }}
),

renamed as (
    select
        ---------- ids
        {{ clean_text('message_id') }} as message_id,
        ---------- attributes
        lower({{ clean_text('channel') }}) as channel,
        coalesce({{ to_boolean('active') }}, true) as active,
        {{ utc_timestamp('valid_from') }} as valid_from,
        {{ utc_timestamp('valid_to') }} as valid_to,
        -- 'fr, De' -> 'FR,DE'; empty means everywhere (null)
        {{ country_list('countries') }} as countries,
        {{ clean_text('title') }} as title,
        {{ clean_text('body') }} as body,
        ---------- lineage
        _file,
        _row,
        {{ contract_violation(
            required=['message_id', 'channel'],
            timestamps=['valid_from', 'valid_to'],
            booleans=['active'],
        ) }} as violation
    from source
),

checked as (
    select
        * {{ star_except() }} (violation),
        coalesce(
            violation,
            case
                when row_number() over (
                    partition by _file, message_id order by violation is not null, _row
                ) > 1 then 'duplicate message_id in snapshot'
            end
        ) as reject_reason
    from renamed
)

select * from checked
