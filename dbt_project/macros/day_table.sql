{#- A table of per-user-day aggregates kept incrementally (int_user_days, int_event_days,
    int_followed_days), so that a daily run aggregates its new day, not the history.

    The table holds the rows of every UTC day before the model's cutoff (as_of, or as_of -
    weight_window_hours), computed from stg_raw__events; the day of the cutoff itself holds
    the part before the cutoff. A day's rows may also depend on the events up to
    `reach_hours` after it (the goals that label a day's events), before as_of. A model opts
    in with

        {{ config(materialized=day_table(), unique_key='event_day', incremental_strategy='delete+insert',
                  pre_hook=day_table_trim(cutoff), on_schema_change='sync_all_columns') }}

    filters its events with in_rebuilt_days(ts, rebuilt_days(cutoff, reach_hours)), and
    carries loaded_through().
    Each run rebuilds whole days (delete+insert on event_day):
    * every day from the table's last day on (the day of the last cutoff, partial, and the
      days since);
    * every day that an event landed since the last build can change: its own day and the
      days up to reach_hours before it (a late goal relabels the events before it);
    and trims first the days at or after the day of this run's cutoff (a run for an earlier
    date). So after every run the table holds exactly what one full build at its as_of
    would: the same days, each computed by the same statement from the same events.
    Late events are found by load_seq (the ingest order of their file) above the largest
    load_seq the last build had landed (loaded_through).
    day_table() dispatches: DuckDB keeps it incrementally, Spark (and the default) builds a
    plain table each run (is_incremental() is then false: every day is built). -#}

{% macro day_table() -%}
    {{ return(adapter.dispatch('day_table')()) }}
{%- endmacro %}

{% macro default__day_table() -%}
    {{ _not_portable('day_table') }}
{%- endmacro %}

{% macro duckdb__day_table() -%}
    {{ return('incremental') }}
{%- endmacro %}

{% macro spark__day_table() -%}
    {{ return('table') }}
{%- endmacro %}

{#- The pre-hook: a run for an earlier cutoff first drops the days it must not see. -#}
{% macro day_table_trim(cutoff) -%}
    {%- if is_incremental() -%}
        delete from {{ this }} where event_day >= date_trunc('day', {{ cutoff }})
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}

{#- The largest load_seq landed so far: a later build treats events above it as late. -#}
{% macro loaded_through() -%}
    (select coalesce(max(landed.load_seq), 0) from {{ ref('stg_raw__landed_files') }} as landed)
{%- endmacro %}

{#- The days this run builds: none in a full build (every day: all_days), else the list of
    days, as SQL timestamp literals, from the table's last day (or the cutoff's day, if
    earlier) on, and the days that late events reach (see above). Read by one query when the
    model runs, and written into its SQL as constants: filters on a subquery made DuckDB
    estimate a handful of rows and plan the ASOF join as a nested loop (minutes at 100k users). -#}
{% macro rebuilt_days(cutoff, reach_hours, added_columns=[]) -%}
    {%- if not is_incremental() -%}
        {{ return(none) }}
    {%- endif -%}
    {%- if not execute -%}
        {{ return([]) }}
    {%- endif -%}
    {#- a table of an earlier version, without the watermark or one of the model's
        added_columns (columns added since the table was first built): every day, once (the
        columns are added by on_schema_change='sync_all_columns', null in the kept rows) -#}
    {%- set present = adapter.get_columns_in_relation(this) | map(attribute='name') | list -%}
    {%- for column in ['loaded_through'] + added_columns -%}
        {%- if column not in present -%}
            {{ return(none) }}
        {%- endif -%}
    {%- endfor -%}
    {%- set reach_days = ((reach_hours | float) / 24.0) | round(0, 'ceil') | int %}
    {%- set query -%}
        select distinct strftime(days.event_day, '%Y-%m-%d %H:%M:%S') as event_day
        from (
            select series.range as event_day
            from {{ day_series(
                "(select least(coalesce(max(built.event_day), date_trunc('day', " ~ cutoff ~ ")), date_trunc('day', "
                ~ cutoff ~ ")) from " ~ this ~ " as built)",
                cutoff,
            ) }} as series
            union
            select
                date_trunc('day', late.event_ts - {{ hours(reach_hours) }}) + {{ hours('24 * offsets.k') }}
                    as event_day
            from {{ ref('stg_raw__events') }} as late
            cross join (select {{ unnest_range(0, reach_days + 1) }} as k) as offsets
            where
                late.load_seq > (select coalesce(max(built.loaded_through), 0) from {{ this }} as built)
                and date_trunc('day', late.event_ts - {{ hours(reach_hours) }}) + {{ hours('24 * offsets.k') }}
                <= late.event_ts
        ) as days
        where days.event_day < {{ cutoff }}
        order by 1
    {%- endset %}
    {%- set days = [] %}
    {%- for row in run_query(query).rows %}
        {%- do days.append("cast('" ~ row[0] ~ "' as timestamp)") %}
    {%- endfor %}
    {{ return(days) }}
{%- endmacro %}

{#- Whether the timestamp is in one of the rebuilt days (true in a full build). -#}
{% macro in_rebuilt_days(ts, days) -%}
    {%- if days is none -%}
        true
    {%- elif not days -%}
        false
    {%- else -%}
        ({{ ts }} >= {{ days[0] }} and date_trunc('day', {{ ts }}) in ({{ days | join(', ') }}))
    {%- endif -%}
{%- endmacro %}

{#- Whether the timestamp is after the first rebuilt day less `hours_before` hours (the
    goals that can reach the rebuilt days; true in a full build or when none is rebuilt). -#}
{% macro after_first_rebuilt_day(ts, days, hours_before=0) -%}
    {%- if days -%}
        {{ ts }} > {{ days[0] }}{% if hours_before %} - {{ hours(hours_before) }}{% endif %}
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}

{#- The rebuilt days as a relation (column event_day): in a full build every day from the first
    event, less reach_hours, to the cutoff. -#}
{% macro rebuilt_days_relation(days, cutoff, reach_hours) -%}
    {%- if days is none -%}
        (
            select series.range as event_day
            from {{ day_series(
                "(select date_trunc('day', min(events.event_ts) - " ~ hours(reach_hours) ~ ") from "
                ~ ref('stg_raw__events') ~ " as events)",
                cutoff,
            ) }} as series
        )
    {%- elif not days -%}
        (select cast(null as timestamp) as event_day where false)
    {%- else -%}
        (
            {%- for day in days %}
            select {{ day }} as event_day
            {%- if not loop.last %}
            union all
            {%- endif %}
            {%- endfor %}
        )
    {%- endif -%}
{%- endmacro %}

{#- A model that sums day rows over a window starting at as_of less whole days needs as_of at
    a midnight (the product's runs always are: D 00:00 UTC). -#}
{% macro require_midnight_as_of() -%}
    {%- set value = (var("as_of", none) or env_var("NUDGEFLOW_AS_OF", "")) | string -%}
    {%- if execute and value -%}
        {%- set t = modules.datetime.datetime.fromisoformat(value.strip()) -%}
        {%- if (t.hour, t.minute, t.second, t.microsecond) != (0, 0, 0, 0) -%}
            {{ exceptions.raise_compiler_error(this.name ~ " needs as_of at a midnight (UTC), got '" ~ value ~ "'") }}
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}
