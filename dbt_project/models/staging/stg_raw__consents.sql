{{ config(materialized='table') }}
-- A table, not a view: several models and tests read it, and a view would rerun the dedup for each.
-- One row per (user_id, channel): the latest valid consent with updated_ts < as_of (ties:
-- the last landed, by ingest order: load_seq of its file, then _row).
with consents as (
    select * from {{ ref('base_raw__consents') }}
    where
        reject_reason is null
        and updated_ts < {{ as_of() }}
),

load_order as (
    select
        _file,
        load_seq
    from {{ ref('stg_raw__landed_files') }}
    where table_name = 'consents'
),

latest as (
    select
        consents.user_id,
        consents.channel,
        consents.opted_in,
        consents.updated_ts
    from consents
    left join load_order
        on load_order._file = consents._file
    qualify row_number() over (
        partition by consents.user_id, consents.channel
        order by
            consents.updated_ts desc,
            load_order.load_seq desc nulls last,
            consents._file desc,
            consents._row desc
    ) = 1
)

select * from latest
