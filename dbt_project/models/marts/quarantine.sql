-- Everything that broke the data contract, with the reason: rows excluded by the staging
-- models (_row = the row in its file) and whole files refused by ingest (_row null), both
-- action 'dropped'; and rows kept with a fail-safe reading (an unknown timezone read as UTC,
-- an unreadable opt-in read as an opt-out), action 'kept', the note as the reason.
{%- set tables = ['events', 'users', 'consents', 'sends', 'messages'] %}
with rejected_rows as (
    {%- for table in tables %}
    select
        '{{ table }}' as table_name,
        _file,
        _row,
        reject_reason as reason,
        'dropped' as action
    from {{ ref('base_raw__' ~ table) }}
    where reject_reason is not null
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}
),

rejected_files as (
    select
        table_name,
        _file,
        cast(null as bigint) as _row,
        reason,
        'dropped' as action
    from {{ ref('stg_raw__quarantined_files') }}
),

kept_rows as (
    {%- for table in ['users', 'consents'] %}
    select
        '{{ table }}' as table_name,
        _file,
        _row,
        note as reason,
        'kept' as action
    from {{ ref('base_raw__' ~ table) }}
    where reject_reason is null and note is not null
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}
),

final as (
    select * from rejected_rows
    union all
    select * from rejected_files
    union all
    select * from kept_rows
)

select * from final
