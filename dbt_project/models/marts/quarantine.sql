-- Everything that broke the data contract, with the reason: rows excluded by the staging
-- models (_row = the row in its file) and whole files refused by ingest (_row null).
{%- set tables = ['events', 'users', 'consents', 'sends', 'messages'] %}
with rejected_rows as (
    {%- for table in tables %}
    select
        '{{ table }}' as table_name,
        _file,
        _row,
        reject_reason as reason
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
        reason
    from {{ ref('stg_raw__quarantined_files') }}
),

final as (
    select * from rejected_rows
    union all
    select * from rejected_files
)

select * from final
