{{ config(materialized='incremental', incremental_strategy='append', on_schema_change='fail') }}
-- Every raw event row, typed, with the reason it breaks the contract (null when it does not).
-- The largest input, so it is typed once per landed file: incremental on _file (a landed
-- file is loaded once and never changes; `dbt build --full-refresh` retypes everything).
with source as (
    select * from {{ source('raw', 'events') }}
    {%- if is_incremental() %}
    where _file not in (select distinct _file from {{ this }})
    {%- endif %}
),

renamed as (
    select
        ---------- ids
        {{ clean_text('event_id') }} as event_id,
        {{ clean_text('user_id') }} as user_id,
        ---------- facts
        {{ clean_text('event_name') }} as event_name,
        {{ utc_timestamp('event_ts') }} as event_ts,
        {{ to_double('value') }} as value,
        ---------- lineage
        _file,
        _row,
        {{ contract_violation(
            required=['user_id', 'event_name', 'event_ts'],
            timestamps=['event_ts'],
            numbers=['value'],
        ) }} as reject_reason
    from source
)

select * from renamed
