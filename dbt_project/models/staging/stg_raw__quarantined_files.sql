-- Landed files quarantined as a whole by ingest (unreadable, or a required column missing).
with source as (
    select * from {{ source('raw', 'quarantined_files') }}
),

renamed as (
    select
        table_name,
        _file,
        reason,
        quarantined_at
    from source
)

select * from renamed
