-- Valid catalogue rows of every snapshot file (message_id unique within a file), with the
-- snapshot they belong to and whether that snapshot is the current one: the file whose name
-- sorts last among the ingested messages files (a file quarantined as a whole never is).
with messages as (
    select * from {{ ref('base_raw__messages') }}
    where reject_reason is null
),

snapshots as (
    select _file from {{ source('raw', 'ingested_files') }}
    where table_name = 'messages'
    union
    select _file from {{ source('raw', 'messages') }}
),

current_snapshot as (
    select max(_file) as _file from snapshots
),

renamed as (
    select
        messages.message_id,
        messages.channel,
        messages.active,
        messages.valid_from,
        messages.valid_to,
        messages.countries,
        messages.title,
        messages.body,
        messages._file as snapshot_file,
        messages._row,
        messages._file = current_snapshot._file as is_current
    from messages
    cross join current_snapshot
)

select * from renamed
