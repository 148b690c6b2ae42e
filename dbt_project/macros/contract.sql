{#- Typing of raw VARCHAR columns by the data contract, and the reason a row breaks it. -#}

{#- Trimmed text; an empty string is missing. -#}
{% macro clean_text(column) -%}
    nullif(trim({{ column }}), '')
{%- endmacro %}

{#- ISO-8601 text as a naive UTC timestamp (the session TimeZone is UTC, so text without an
    offset is read as UTC); null if missing or unparsable. -#}
{% macro utc_timestamp(column) -%}
    (try_cast({{ clean_text(column) }} as timestamptz) at time zone 'UTC')
{%- endmacro %}

{% macro to_double(column) -%}
    try_cast({{ clean_text(column) }} as double)
{%- endmacro %}

{#- true/false, t/f, yes/no, 1/0 in any case. -#}
{% macro to_boolean(column) -%}
    try_cast(lower({{ clean_text(column) }}) as boolean)
{%- endmacro %}

{#- Every way a raw row breaks the contract, joined with '; ' (null when the row is fine):
    a required column missing or empty, or a timestamp / number / boolean that does not parse. -#}
{% macro contract_violation(required=[], timestamps=[], numbers=[], booleans=[]) -%}
    nullif(concat_ws('; '
    {%- for column in required %},
        case when {{ clean_text(column) }} is null then 'missing {{ column }}' end
    {%- endfor %}
    {%- for column in timestamps %},
        case when {{ clean_text(column) }} is not null and {{ utc_timestamp(column) }} is null
            then 'unparsable timestamp {{ column }}: ' || {{ column }} end
    {%- endfor %}
    {%- for column in numbers %},
        case when {{ clean_text(column) }} is not null and {{ to_double(column) }} is null
            then 'unparsable number {{ column }}: ' || {{ column }} end
    {%- endfor %}
    {%- for column in booleans %},
        case when {{ clean_text(column) }} is not null and {{ to_boolean(column) }} is null
            then 'unparsable boolean {{ column }}: ' || {{ column }} end
    {%- endfor %}
    ), '')
{%- endmacro %}
