{{ config(materialized='incremental', incremental_strategy='append', on_schema_change='fail') }}
-- Every raw send row, typed, with the reason it breaks the contract (null when it does not).
-- send_id is unique: the first valid row landed with a send_id is kept (an earlier run's row,
-- then by ingest order: load_seq of its file, then _row) and every later one is a 'duplicate
-- send_id', so a send once accepted (and perhaps already measured) is never replaced, not
-- even by a --full-refresh after a late file whose name sorts first. Incremental on _file:
-- each landed file is typed and checked once (landed files never change).
with source as (
    select * from {{ source('raw', 'sends') }}
    {%- if is_incremental() %}
    where _file not in (select distinct _file from {{ this }})
    {%- endif %}
),

renamed as (
    select
        ---------- ids
        {{ clean_text('send_id') }} as send_id,
        {{ clean_text('user_id') }} as user_id,
        {{ clean_text('message_id') }} as message_id,
        ---------- facts
        lower({{ clean_text('channel') }}) as channel,
        {{ utc_timestamp('sent_ts') }} as sent_ts,
        ---------- lineage
        _file,
        _row,
        {{ contract_violation(
            required=['send_id', 'user_id', 'message_id', 'channel', 'sent_ts'],
            timestamps=['sent_ts'],
        ) }} as violation
    from source
),

load_order as (
    select
        _file,
        load_seq
    from {{ ref('stg_raw__landed_files') }}
    where table_name = 'sends'
),

accepted_before as (
    {%- if is_incremental() %}
    select distinct send_id from {{ this }}
    where reject_reason is null
    {%- else %}
    select cast(null as string) as send_id
    where false
    {%- endif %}
),

checked as (
    select
        renamed.* {{ star_except() }} (violation),  -- a column of renamed -- noqa: RF02
        coalesce(
            renamed.violation,
            case
                when accepted_before.send_id is not null then 'duplicate send_id'
                when row_number() over (
                    partition by renamed.send_id
                    order by
                        renamed.violation is not null,
                        load_order.load_seq asc nulls first,
                        renamed._file asc,
                        renamed._row asc
                ) > 1 then 'duplicate send_id'
            end
        ) as reject_reason
    from renamed
    left join load_order
        on load_order._file = renamed._file
    left join accepted_before
        on accepted_before.send_id = renamed.send_id
)

select * from checked
