{{ config(materialized='table') }}
-- Valid events before as_of, deduplicated: rows sharing an event_id are one event; rows
-- without one are one event when (user_id, event_name, event_ts, value) repeat. The first
-- landed row is kept: by ingest order (load_seq of its file), then _row; a late file never
-- replaces an accepted event, whatever its name (rows of a file without a load_seq, loaded
-- by hand, count as landed first, by _file). A table, not a view: the largest input, read
-- by five models.
with events as (
    select * from {{ ref('base_raw__events') }}
    where reject_reason is null
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
        events.value
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

select * from deduplicated
where event_ts < {{ as_of() }}
