-- Every raw consent row, typed, with the reason it breaks the contract (null when it does not).
-- Fail safe: a row whose opted_in is missing or unparsable (`off`, `2`) still counts, as an
-- opt-out, with a note in marts.quarantine: a user who tried to opt out is never left opted in
-- by an earlier row.
-- Typed once per landed file, like base_raw__events: incremental on _file (a landed file is
-- loaded once and never changes; a view typed every consent of the history in each of its
-- readers every run; `dbt build --full-refresh` retypes everything).
{{ config(materialized='incremental', incremental_strategy='append', on_schema_change='fail') }}
with source as (
    select * from {{ source('raw', 'consents') }}
    {%- if is_incremental() %}
    where _file not in (select distinct _file from {{ this }})
    {%- endif %}
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
