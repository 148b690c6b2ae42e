{{ config(materialized='incremental', incremental_strategy='append', on_schema_change='fail') }}
-- The valid events, deduplicated, of every as-of time (stg_raw__events filters them to the
-- run's as_of). Incremental on _file like base_raw__events: a run deduplicates only the rows
-- of files it has not seen and drops those repeating an event accepted by an earlier run, so
-- a daily run costs the new files, not the history. The first landed row wins either way
-- (ingest order: load_seq, then _file, then _row), as in one full recompute.
with events as (
    select * from {{ ref('base_raw__events') }}
    where reject_reason is null
    {%- if is_incremental() %}
        and _file not in (select distinct accepted._file from {{ this }} as accepted)
    {%- endif %}
),

load_order as (
    select
        _file,
        load_seq
    from {{ ref('stg_raw__landed_files') }}
    where table_name = 'events'
),

deduplicated as (
    select
        events.event_id,
        events.user_id,
        events.event_name,
        events.event_ts,
        events.value,
        load_order.load_seq,
        events._file,
        events._row
    from events
    left join load_order
        on load_order._file = events._file
    qualify row_number() over (
        partition by
            events.event_id,
            case when events.event_id is null then events.user_id end,
            case when events.event_id is null then events.event_name end,
            case when events.event_id is null then events.event_ts end,
            case when events.event_id is null then events.value end
        order by load_order.load_seq asc nulls first, events._file asc, events._row asc
    ) = 1
)

{%- if is_incremental() %}

-- rows with an event_id are one event per id; rows without one per (user, name, time, value).
-- The ids already accepted are looked up among the new ones (a hash of the new rows' ids, the
-- accepted ids streamed past it), not the reverse: an anti join on the accepted ids hashed
-- every id of the history on every run (106M at 1M users).
select * from deduplicated
where
    event_id is not null
    and event_id not in (
        select accepted.event_id
        from {{ this }} as accepted
        where accepted.event_id in (select new_rows.event_id from deduplicated as new_rows)
    )
union all
select * from deduplicated
where
    event_id is null
    and not exists (
        select 1
        from {{ this }} as accepted
        where
            accepted.event_id is null
            and accepted.user_id = deduplicated.user_id
            and accepted.event_name = deduplicated.event_name
            and accepted.event_ts = deduplicated.event_ts
            and accepted.value is not distinct from deduplicated.value
    )
{%- else %}

select * from deduplicated
{%- endif %}
-- stored in time order: DuckDB skips the row groups outside a time filter by their min and
-- max, so a daily run's scans of recent days (the day tables, the windows) read those days only
order by event_ts
