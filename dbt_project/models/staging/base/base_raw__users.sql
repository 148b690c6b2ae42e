-- Every raw user row, typed, with the reason it breaks the contract (null when it does not).
-- A missing or unknown timezone is not a violation: it means UTC (contract). Known zones are
-- the names DuckDB and Python both know and agree on (raw.timezones, written by ingest from
-- plugins/nudgeflow/timezones.py), matched case-insensitively and returned in their canonical
-- case. Another name (an abbreviation like PST or IST, which ICU reads its own way) is
-- treated as UTC, with a note in marts.quarantine naming the row.
with source as (
    select * from {{ source('raw', 'users') }}
),

known_timezones as (
    select
        lower(name) as timezone_key,
        min(name) as timezone
    from {{ source('raw', 'timezones') }}
    group by lower(name)
),

renamed as (
    select
        ---------- ids
        {{ clean_text('user_id') }} as user_id,
        ---------- attributes
        lower({{ clean_text('timezone') }}) as timezone_key,
        {{ shown(clean_text('timezone')) }} as timezone_landed,
        upper({{ clean_text('country') }}) as country,
        {{ utc_timestamp('updated_ts') }} as updated_ts,
        ---------- lineage
        _file,
        _row,
        {{ contract_violation(required=['user_id'], timestamps=['updated_ts']) }} as reject_reason
    from source
),

with_timezone as (
    select
        renamed.user_id,
        coalesce(known_timezones.timezone, 'UTC') as timezone,
        renamed.country,
        renamed.updated_ts,
        renamed._file,
        renamed._row,
        renamed.reject_reason,
        case
            when renamed.timezone_key is not null and known_timezones.timezone is null
                then 'unknown timezone ' || renamed.timezone_landed || ': treated as UTC'
        end as note
    from renamed
    left join known_timezones
        on known_timezones.timezone_key = renamed.timezone_key
)

select * from with_timezone
