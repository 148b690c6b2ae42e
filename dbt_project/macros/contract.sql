{#- Typing of raw VARCHAR columns by the data contract, and the reason a row breaks it. -#}

{#- Trimmed text; an empty string is missing. -#}
{% macro clean_text(column) -%}
    nullif(trim({{ column }}), '')
{%- endmacro %}

{#- utc_timestamp(column): ISO-8601 text as a naive UTC timestamp (the session TimeZone is UTC,
    so text without an offset is read as UTC); null if missing, unparsable or not a sane instant:
    only YYYY-MM-DD[( |T)hh:mm[:ss[.fraction]]][Z|+hh[:mm]|-hh[:mm]] with an offset of at most
    14 h, from 1970 to 2200 (so `infinity`, `epoch`, BC dates and `+99:00` are refused, and no
    landed row can break a later run's date arithmetic). to_double(column): a finite number;
    null if missing, unparsable, NaN or infinite. Both differ by engine: macros/portable.sql. -#}

{#- A value as it landed, cut to 100 characters, for a reason or a note. -#}
{% macro shown(column) -%}
    left({{ column }}, 100)
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
            then 'unparsable timestamp {{ column }} (ISO-8601 from 1970 to 2200 expected): ' || {{ shown(column) }} end
    {%- endfor %}
    {%- for column in numbers %},
        case when {{ clean_text(column) }} is not null and {{ to_double(column) }} is null
            then 'unparsable number {{ column }} (a finite number expected): ' || {{ shown(column) }} end
    {%- endfor %}
    {%- for column in booleans %},
        case when {{ clean_text(column) }} is not null and {{ to_boolean(column) }} is null
            then 'unparsable boolean {{ column }}: ' || {{ shown(column) }} end
    {%- endfor %}
    ), '')
{%- endmacro %}
