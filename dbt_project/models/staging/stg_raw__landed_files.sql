-- The order in which ingest read the landed files (load_seq, over all tables): the staging
-- models keep "the first landed" row by it, not by file name, so a file that lands late
-- never takes the place of rows accepted earlier, whatever its name.
with source as (
    select * from {{ source('raw', 'landed_files') }}
),

renamed as (
    select
        table_name,
        _file,
        load_seq,
        size_bytes,
        modified_at,
        sha256,
        read_at
    from source
)

select * from renamed
