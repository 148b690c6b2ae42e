{{ config(materialized='view') }}
-- The deduplicated valid events (base_raw__events_deduplicated, kept incrementally) before
-- the run's as_of, with the ingest order of their file (the day tables find late events by it).
select
    event_id,
    user_id,
    event_name,
    event_ts,
    value,
    load_seq
from {{ ref('base_raw__events_deduplicated') }}
where event_ts < {{ as_of() }}
