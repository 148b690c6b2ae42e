{{ config(materialized='table') }}
-- A table, not a view: several models and tests read it, and a view would rerun the dedup for each.
-- One row per user: the latest valid row known at as_of (updated_ts < as_of, or no
-- updated_ts). Latest = greatest updated_ts (a row without one is older than any dated row),
-- then the last landed (by ingest order: load_seq of its file, then _row).
with users as (
    select * from {{ ref('base_raw__users') }}
    where
        reject_reason is null
        and (updated_ts is null or updated_ts < {{ as_of() }})
),

load_order as (
    select
        _file,
        load_seq
    from {{ ref('stg_raw__landed_files') }}
    where table_name = 'users'
),

latest as (
    select
        users.user_id,
        users.timezone,
        users.country,
        users.updated_ts
    from users
    left join load_order
        on load_order._file = users._file
    qualify row_number() over (
        partition by users.user_id
        order by
            users.updated_ts desc nulls last,
            load_order.load_seq desc nulls last,
            users._file desc,
            users._row desc
    ) = 1
)

select * from latest
