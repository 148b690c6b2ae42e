{{ config(materialized='table') }}
-- Valid events before as_of, deduplicated: rows sharing an event_id are one event; rows
-- without one are one event when (user_id, event_name, event_ts, value) repeat. The first
-- landed row (by _file, _row) is kept. A table, not a view: the largest input, read by five models.
with events as (
    select * from {{ ref('base_raw__events') }}
    where reject_reason is null
),

deduplicated as (
    select
        event_id,
        user_id,
        event_name,
        event_ts,
        value
    from events
    qualify row_number() over (
        partition by
            event_id,
            case when event_id is null then user_id end,
            case when event_id is null then event_name end,
            case when event_id is null then event_ts end,
            case when event_id is null then value end
        order by _file, _row
    ) = 1
)

select * from deduplicated
where event_ts < {{ as_of() }}
