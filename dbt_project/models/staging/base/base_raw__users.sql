-- Every raw user row, typed, with the reason it breaks the contract (null when it does not).
-- A missing or unknown IANA timezone is not a violation: it means UTC (contract). Names are
-- matched case-insensitively against DuckDB's ICU zones and returned in their canonical case.
with source as (
    select * from {{ source('raw', 'users') }}
),

known_timezones as (
    select
        lower(name) as timezone_key,
        min(name) as timezone
    from pg_timezone_names()
    group by lower(name)
),

renamed as (
    select
        ---------- ids
        {{ clean_text('user_id') }} as user_id,
        ---------- attributes
        lower({{ clean_text('timezone') }}) as timezone_key,
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
        renamed.reject_reason
    from renamed
    left join known_timezones
        on known_timezones.timezone_key = renamed.timezone_key
)

select * from with_timezone
