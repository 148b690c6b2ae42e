-- Labels of the valid catalogue rows, long format: one row per (snapshot, message,
-- dimension); the dimension is the column name without 'label_', lower-cased, and it names
-- the action set 'label_<dimension>' whose actions are its values.
with labels as (
    select * from {{ source('raw', 'message_labels') }}
),

messages as (
    select * from {{ ref('stg_raw__messages') }}
),

renamed as (
    select
        messages.message_id,
        lower({{ clean_text('labels.dimension') }}) as dimension,
        {{ clean_text('labels.value') }} as action,
        messages.snapshot_file,
        messages.is_current,
        labels._row
    from labels
    inner join messages
        on messages.snapshot_file = labels._file
        and messages._row = labels._row
),

deduplicated as (
    select
        message_id,
        dimension,
        'label_' || dimension as action_set,
        action,
        snapshot_file,
        is_current
    from renamed
    where dimension is not null and action is not null
    qualify row_number() over (partition by snapshot_file, message_id, dimension order by _row) = 1
)

select * from deduplicated
