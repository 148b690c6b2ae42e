{#- A table built one slice at a time (the controls of a first run or a remeasure: the whole
    history at once ranked billions of candidate rows in one statement at 1M users and spilled
    past the disk; docs/benchmarks.md). A model opts in with

        {{ config(materialized=sliced_table(), slice_from='a_model', slice_by='an expression') }}

    and filters its inputs with in_slice, near_slice, slice_has_day. The slices are runs of
    consecutive values of slice_by over ref(slice_from), each holding at most
    var('measure_slice_sends') rows of it (at least one value): the table is created from the
    first slice and each other slice is inserted, in one transaction, then swapped in like a
    table. So a slice's rows must depend only on the inputs of its own values (the controls of
    the sends of its hours). A daily run (one or two send days) is one or two slices.
    sliced_table() dispatches: DuckDB builds in slices, Spark (and the default) a plain table,
    on which in_slice is always true. -#}

{#- in_slice's bounds as written in the compiled SQL: a range that holds every value, which the
    materialization replaces by each slice's (so the compiled model, run as it is, is the
    whole table). -#}
{% macro _slice_lo() -%}
    cast('0001-01-01 00:00:00' as timestamp) /* nudgeflow slice lo */
{%- endmacro %}

{% macro _slice_hi() -%}
    cast('9999-12-31 00:00:00' as timestamp) /* nudgeflow slice hi */
{%- endmacro %}

{#- Whether the timestamp is in the slice being built (always true in a plain table). The
    slices' bounds are values of slice_by: when slice_by truncates a column (an hour, a day),
    filtering the column itself is the same and lets DuckDB skip row groups by their ranges. -#}
{% macro in_slice(ts) -%}
    {%- if config.get('materialized') == 'sliced_table' -%}
        ({{ ts }} >= {{ _slice_lo() }} and {{ ts }} < {{ _slice_hi() }})
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}

{#- Whether the timestamp is in the slice widened by `hours_` hours on both sides: the events a
    window of that length around a time of the slice can reach. -#}
{% macro near_slice(ts, hours_) -%}
    {%- if config.get('materialized') == 'sliced_table' -%}
        ({{ ts }} >= {{ _slice_lo() }} - {{ hours(hours_) }} and {{ ts }} < {{ _slice_hi() }} + {{ hours(hours_) }})
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}

{#- Whether the day (a timestamp at 00:00) holds times of the slice being built. -#}
{% macro slice_has_day(day) -%}
    {%- if config.get('materialized') == 'sliced_table' -%}
        ({{ day }} >= date_trunc('day', {{ _slice_lo() }}) and {{ day }} < {{ _slice_hi() }})
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}

{#- The slices of the model being built: a list of (lo, hi) SQL literals, lo inclusive, hi
    exclusive; the first lo and the last hi are the unbounded ones of in_slice. -#}
{% macro _slices(slice_from, slice_by, max_rows) -%}
    {%- set keys_sql -%}
        select
            cast({{ slice_by }} as string) as slice_key,
            count(*) as n_rows
        from {{ ref(slice_from) }}
        group by {{ slice_by }}
        order by {{ slice_by }}
    {%- endset -%}
    {%- set keys = run_query(keys_sql) -%}
    {%- set starts = [] -%}
    {%- set ns = namespace(n=0) -%}
    {%- for row in keys.rows -%}
        {%- if starts | length == 0 or ns.n + row[1] > max_rows -%}
            {%- do starts.append(row[0]) -%}
            {%- set ns.n = 0 -%}
        {%- endif -%}
        {%- set ns.n = ns.n + row[1] -%}
    {%- endfor -%}
    {%- set slices = [] -%}
    {%- for start in starts -%}
        {%- set lo = _slice_lo() if loop.first else "cast('" ~ start ~ "' as timestamp)" -%}
        {%- set hi = _slice_hi() if loop.last else "cast('" ~ starts[loop.index] ~ "' as timestamp)" -%}
        {%- do slices.append((lo, hi)) -%}
    {%- endfor -%}
    {%- if slices | length == 0 -%}
        {%- do slices.append((_slice_lo(), _slice_hi())) -%}
    {%- endif -%}
    {{ return(slices) }}
{%- endmacro %}

{% materialization sliced_table, adapter='duckdb' %}
    {%- set slice_from = config.require('slice_from') -%}
    {%- set slice_by = config.require('slice_by') -%}
    {%- set max_rows = var('measure_slice_sends') | int -%}
    {%- if _slice_lo() not in compiled_code or _slice_hi() not in compiled_code -%}
        {{ exceptions.raise_compiler_error("sliced_table " ~ this ~ ": the model filters no input with in_slice()") }}
    {%- endif -%}

    {%- set existing_relation = load_cached_relation(this) -%}
    {%- set target_relation = this.incorporate(type='table') -%}
    {%- set intermediate_relation = make_intermediate_relation(target_relation) -%}
    {%- set backup_relation = make_backup_relation(target_relation, 'table') -%}
    {{ drop_relation_if_exists(load_cached_relation(intermediate_relation)) }}
    {{ drop_relation_if_exists(load_cached_relation(backup_relation)) }}

    {{ run_hooks(pre_hooks, inside_transaction=False) }}
    {{ run_hooks(pre_hooks, inside_transaction=True) }}

    {%- set slices = _slices(slice_from, slice_by, max_rows) -%}
    {%- for lo, hi in slices -%}
        {%- set slice_sql = compiled_code.replace(_slice_lo(), lo).replace(_slice_hi(), hi) -%}
        {%- if loop.first -%}
            {% call statement('main' if loop.last else 'slice_' ~ loop.index) -%}
                {{ create_table_as(False, intermediate_relation, slice_sql) }}
            {%- endcall %}
        {%- else -%}
            {% call statement('main' if loop.last else 'slice_' ~ loop.index) -%}
                insert into {{ intermediate_relation }}
                select * from (
                    {{ slice_sql }}
                ) as slice_rows
            {%- endcall %}
        {%- endif -%}
        {% do log(model.name ~ ": slice " ~ loop.index ~ " of " ~ loop.length ~ " [" ~ lo ~ ", " ~ hi ~ ") built", info=False) %}
    {%- endfor -%}

    {%- if existing_relation is not none -%}
        {{ adapter.rename_relation(existing_relation, backup_relation) }}
    {%- endif -%}
    {{ adapter.rename_relation(intermediate_relation, target_relation) }}

    {{ run_hooks(post_hooks, inside_transaction=True) }}
    {% do persist_docs(target_relation, model) %}
    {{ adapter.commit() }}
    {{ drop_relation_if_exists(backup_relation) }}
    {{ run_hooks(post_hooks, inside_transaction=False) }}

    {{ return({'relations': [target_relation]}) }}
{% endmaterialization %}
