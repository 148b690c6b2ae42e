-- The label actions of the current catalogue: one row per (message, label dimension).
with labels as (
    select * from {{ ref('stg_raw__message_labels') }}
    where is_current
),

final as (
    select
        message_id,
        action_set,
        action
    from labels
)

select * from final
