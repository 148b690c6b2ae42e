-- Every frequency action is one of the buckets built from frequency_bucket_hours.
select *
from {{ ref('int_sends__actions') }}
where frequency not in (
    {%- for label in frequency_bucket_labels() %}
    '{{ label }}'{{ ',' if not loop.last }}
    {%- endfor %}
)
