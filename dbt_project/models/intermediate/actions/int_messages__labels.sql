-- Step 4 (actions), the label actions of every message ever in the catalogue: the labels of
-- the latest snapshot file that contains the message (so a send keeps the labels of a
-- message later dropped from the catalogue), as action_set 'label_<dimension>' and action.
with messages as (
    select
        message_id,
        snapshot_file
    from {{ ref('stg_raw__messages') }}
),

latest_snapshot as (
    select
        message_id,
        max(snapshot_file) as snapshot_file
    from messages
    group by message_id
),

labels as (
    select * from {{ ref('stg_raw__message_labels') }}
),

latest_labels as (
    select
        labels.message_id,
        labels.action_set,
        labels.action
    from labels
    inner join latest_snapshot
        on latest_snapshot.message_id = labels.message_id
        and latest_snapshot.snapshot_file = labels.snapshot_file
)

select * from latest_labels
