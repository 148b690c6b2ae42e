{#- The SQL that differs between the engines, written once (docs/scale-out.md). Each macro is
    an adapter.dispatch: duckdb__ is the DuckDB text the project has always used, spark__ the
    Spark SQL text (open-source Spark 4.x or Databricks, through dbt-spark) that gives the
    same values, and default__ stops the compile naming the macro and the adapter. The Spark
    traps they avoid: dbt-spark turns ANSI mode off (integer overflow wraps silently, a bad
    cast is null), a literal like 3600000000.0 is a decimal on Spark, dbt.dateadd/datediff
    work in whole seconds there, and an unknown time zone raises instead of giving null. -#}

{% macro _not_portable(name) -%}
    {{ exceptions.raise_compiler_error(
        "macro " ~ name ~ " has no implementation for the adapter '" ~ adapter.type()
        ~ "' (only duckdb and spark): add a " ~ adapter.type() ~ "__" ~ name ~ " in macros/portable.sql"
    ) }}
{%- endmacro %}

{#- ------------------------------------------------------------------ timestamps -#}

{#- ISO-8601 text as a UTC timestamp (see contract.sql). -#}
{% macro utc_timestamp(column) -%}
    {{ return(adapter.dispatch('utc_timestamp')(column)) }}
{%- endmacro %}

{% macro default__utc_timestamp(column) -%}
    {{ _not_portable('utc_timestamp') }}
{%- endmacro %}

{% macro duckdb__utc_timestamp(column) -%}
    case
        when regexp_full_match(
            {{ clean_text(column) }},
            '{{ iso_timestamp_pattern() }}'
        )
        and (try_cast({{ clean_text(column) }} as timestamptz) at time zone 'UTC')
        between timestamp '1970-01-01' and timestamp '2200-01-01'
            then (try_cast({{ clean_text(column) }} as timestamptz) at time zone 'UTC')
    end
{%- endmacro %}

{#- Spark's timestamp is an instant shown in the session time zone (UTC in the spark target):
    the cast reads an offset when there is one and UTC when not, like DuckDB's timestamptz. -#}
{% macro spark__utc_timestamp(column) -%}
    case
        when {{ clean_text(column) }} rlike '^({{ iso_timestamp_pattern() }})$'
        and try_cast({{ clean_text(column) }} as timestamp)
        between timestamp '1970-01-01' and timestamp '2200-01-01'
            then try_cast({{ clean_text(column) }} as timestamp)
    end
{%- endmacro %}

{%- macro iso_timestamp_pattern() -%}
    [0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}([.][0-9]{1,9})?)?)? *(Z|[+-](0[0-9]|1[0-4])(:?[0-5][0-9])?)?
{%- endmacro -%}

{#- Microseconds since 1970-01-01 00:00 UTC of a timestamp (a bigint). -#}
{% macro epoch_us(ts) -%}
    {{ return(adapter.dispatch('epoch_us')(ts)) }}
{%- endmacro %}

{% macro default__epoch_us(ts) -%}
    {{ _not_portable('epoch_us') }}
{%- endmacro %}

{% macro duckdb__epoch_us(ts) -%}
    epoch_us({{ ts }})
{%- endmacro %}

{% macro spark__epoch_us(ts) -%}
    unix_micros({{ ts }})
{%- endmacro %}

{#- An interval of (possibly fractional) hours, exact to the microsecond. -#}
{% macro hours(value) -%}
    {{ return(adapter.dispatch('hours')(value)) }}
{%- endmacro %}

{% macro default__hours(value) -%}
    {{ _not_portable('hours') }}
{%- endmacro %}

{% macro duckdb__hours(value) -%}
    to_microseconds(cast(round(({{ value }}) * 3600000000) as bigint))
{%- endmacro %}

{#- (dbt.dateadd would round to whole seconds on Spark) -#}
{% macro spark__hours(value) -%}
    make_dt_interval(0, 0, 0, cast(cast(round(({{ value }}) * 3600000000) as bigint) as decimal(38, 0)) / 1000000)
{%- endmacro %}

{#- Signed hours from timestamp a to timestamp b, a double. -#}
{% macro hours_between(a, b) -%}
    {{ return(adapter.dispatch('hours_between')(a, b)) }}
{%- endmacro %}

{% macro default__hours_between(a, b) -%}
    {{ _not_portable('hours_between') }}
{%- endmacro %}

{% macro duckdb__hours_between(a, b) -%}
    (date_diff('microsecond', {{ a }}, {{ b }}) / 3600000000.0)
{%- endmacro %}

{#- (3600000000.0 would be a decimal on Spark, and the quotient a decimal(33,12)) -#}
{% macro spark__hours_between(a, b) -%}
    ((unix_micros({{ b }}) - unix_micros({{ a }})) / 3600000000D)
{%- endmacro %}

{#- A series of days, a relation with one timestamp column `range`: start, start + 1 day, ...
    while before stop. -#}
{% macro day_series(start, stop) -%}
    {{ return(adapter.dispatch('day_series')(start, stop)) }}
{%- endmacro %}

{% macro default__day_series(start, stop) -%}
    {{ _not_portable('day_series') }}
{%- endmacro %}

{% macro duckdb__day_series(start, stop) -%}
    range(
        {{ start }},
        {{ stop }},
        interval 1 day
    )
{%- endmacro %}

{% macro spark__day_series(start, stop) -%}
    (
        select series.day as range
        from (
            select
                explode(sequence(bounds.first_day, greatest(bounds.first_day, bounds.stop), interval 1 day)) as day,
                bounds.stop
            from (select {{ start }} as first_day, {{ stop }} as stop) as bounds
        ) as series
        where series.day < series.stop
    )
{%- endmacro %}

{#- The local wall-clock time of a UTC timestamp in an IANA time zone. The zone must be one
    the engine knows (raw.timezones, or 'UTC'): Spark raises on an unknown one. -#}
{% macro local_time(ts, timezone) -%}
    {{ return(adapter.dispatch('local_time')(ts, timezone)) }}
{%- endmacro %}

{% macro default__local_time(ts, timezone) -%}
    {{ _not_portable('local_time') }}
{%- endmacro %}

{% macro duckdb__local_time(ts, timezone) -%}
    timezone({{ timezone }}, cast({{ ts }} as timestamptz))
{%- endmacro %}

{% macro spark__local_time(ts, timezone) -%}
    from_utc_timestamp({{ ts }}, {{ timezone }})
{%- endmacro %}

{#- ------------------------------------------------------------------ numbers -#}

{#- A finite double; null if missing, unparsable, NaN or infinite (see contract.sql). -#}
{% macro to_double(column) -%}
    {{ return(adapter.dispatch('to_double')(column)) }}
{%- endmacro %}

{% macro default__to_double(column) -%}
    {{ _not_portable('to_double') }}
{%- endmacro %}

{% macro duckdb__to_double(column) -%}
    case
        when isfinite(try_cast({{ clean_text(column) }} as double))
            then try_cast({{ clean_text(column) }} as double)
    end
{%- endmacro %}

{% macro spark__to_double(column) -%}
    case
        when not isnan(try_cast({{ clean_text(column) }} as double))
        and abs(try_cast({{ clean_text(column) }} as double)) < double('infinity')
            then try_cast({{ clean_text(column) }} as double)
    end
{%- endmacro %}

{#- Integer division of non-negative integers (floor). -#}
{% macro int_div(a, b) -%}
    {{ return(adapter.dispatch('int_div')(a, b)) }}
{%- endmacro %}

{% macro default__int_div(a, b) -%}
    {{ _not_portable('int_div') }}
{%- endmacro %}

{% macro duckdb__int_div(a, b) -%}
    {{ a }} // {{ b }}
{%- endmacro %}

{% macro spark__int_div(a, b) -%}
    {{ a }} div {{ b }}
{%- endmacro %}

{#- The sum of integer products that can pass 2^63 (microseconds times counts), exact: DuckDB
    sums bigints into a hugeint; Spark (ANSI off under dbt-spark) would wrap a bigint sum
    silently, so it sums decimal(38, 0). Both are then divided as doubles. -#}
{% macro wide_sum(expression) -%}
    {{ return(adapter.dispatch('wide_sum')(expression)) }}
{%- endmacro %}

{% macro default__wide_sum(expression) -%}
    {{ _not_portable('wide_sum') }}
{%- endmacro %}

{% macro duckdb__wide_sum(expression) -%}
    sum({{ expression }})
{%- endmacro %}

{% macro spark__wide_sum(expression) -%}
    cast(sum(cast({{ expression }} as decimal(38, 0))) as double)
{%- endmacro %}

{#- ------------------------------------------------------------------ hashes and text -#}

{#- Global holdout, a stable hash of user_id: the first 32 bits of md5(user_id) as a number in
    [0, 1) compared with holdout_fraction. Python reads user_features.is_holdout, never recomputes. -#}
{% macro is_holdout(user_id) -%}
    {{ return(adapter.dispatch('is_holdout')(user_id)) }}
{%- endmacro %}

{% macro default__is_holdout(user_id) -%}
    {{ _not_portable('is_holdout') }}
{%- endmacro %}

{% macro duckdb__is_holdout(user_id) -%}
    ((('0x' || left(md5({{ user_id }}), 8))::ubigint / 4294967296.0) < {{ var('holdout_fraction') }})
{%- endmacro %}

{% macro spark__is_holdout(user_id) -%}
    ((cast(conv(left(md5({{ user_id }}), 8), 16, 10) as bigint) / 4294967296D) < {{ var('holdout_fraction') }})
{%- endmacro %}

{#- A comma-separated list of ISO codes normalised: 'fr, De' -> 'FR,DE'; empty -> null. -#}
{% macro country_list(column) -%}
    {{ return(adapter.dispatch('country_list')(column)) }}
{%- endmacro %}

{% macro default__country_list(column) -%}
    {{ _not_portable('country_list') }}
{%- endmacro %}

{% macro duckdb__country_list(column) -%}
    nullif(
        array_to_string(
            list_filter(
                list_transform(string_split(coalesce({{ column }}, ''), ','), lambda c: upper(trim(c))),
                lambda c: c <> ''
            ),
            ','
        ),
        ''
    )
{%- endmacro %}

{% macro spark__country_list(column) -%}
    nullif(
        array_join(
            filter(
                transform(split(coalesce({{ column }}, ''), ','), c -> upper(trim(c))),
                c -> c <> ''
            ),
            ','
        ),
        ''
    )
{%- endmacro %}

{#- ------------------------------------------------------------------ lists -#}

{#- The list of a column's values per group (an aggregate). -#}
{% macro list_agg(expression) -%}
    {{ return(adapter.dispatch('list_agg')(expression)) }}
{%- endmacro %}

{% macro default__list_agg(expression) -%}
    {{ _not_portable('list_agg') }}
{%- endmacro %}

{% macro duckdb__list_agg(expression) -%}
    list({{ expression }})
{%- endmacro %}

{% macro spark__list_agg(expression) -%}
    collect_list({{ expression }})
{%- endmacro %}

{#- Whether some element s of a list of send times (microseconds) is in [lo, hi): null for a
    null list. The "no send in the window" test of controls and placebos. -#}
{% macro any_in_window(list, lo, hi) -%}
    {{ return(adapter.dispatch('any_in_window')(list, lo, hi)) }}
{%- endmacro %}

{% macro default__any_in_window(list, lo, hi) -%}
    {{ _not_portable('any_in_window') }}
{%- endmacro %}

{% macro duckdb__any_in_window(list, lo, hi) -%}
    list_bool_or(list_transform(
        {{ list }},
        lambda s: s >= {{ lo }}
        and s < {{ hi }}
    ))
{%- endmacro %}

{% macro spark__any_in_window(list, lo, hi) -%}
    exists({{ list }}, s -> s >= {{ lo }} and s < {{ hi }})
{%- endmacro %}

{#- The elements of a list of send times in [lo, hi), in their order; null if there are none
    (or for a null list). -#}
{% macro filter_in_window(list, lo, hi) -%}
    {{ return(adapter.dispatch('filter_in_window')(list, lo, hi)) }}
{%- endmacro %}

{% macro default__filter_in_window(list, lo, hi) -%}
    {{ _not_portable('filter_in_window') }}
{%- endmacro %}

{% macro duckdb__filter_in_window(list, lo, hi) -%}
    case
        when {{ duckdb__any_in_window(list, lo, hi) }}
            then list_filter({{ list }}, lambda s: s >= {{ lo }} and s < {{ hi }})
    end
{%- endmacro %}

{% macro spark__filter_in_window(list, lo, hi) -%}
    case
        when {{ spark__any_in_window(list, lo, hi) }}
            then filter({{ list }}, s -> s >= {{ lo }} and s < {{ hi }})
    end
{%- endmacro %}

{#- The largest element of a list of send times in [lo, hi) (null if none). -#}
{% macro max_in_window(list, lo, hi) -%}
    {{ return(adapter.dispatch('max_in_window')(list, lo, hi)) }}
{%- endmacro %}

{% macro default__max_in_window(list, lo, hi) -%}
    {{ _not_portable('max_in_window') }}
{%- endmacro %}

{% macro duckdb__max_in_window(list, lo, hi) -%}
    list_max(list_filter(
        {{ list }},
        lambda s: s >= {{ lo }} and s < {{ hi }}
    ))
{%- endmacro %}

{% macro spark__max_in_window(list, lo, hi) -%}
    array_max(filter({{ list }}, s -> s >= {{ lo }} and s < {{ hi }}))
{%- endmacro %}

{#- The integers lo, lo + 1, ..., hi - 1 as rows (a set-returning select expression). -#}
{% macro unnest_range(lo, hi) -%}
    {{ return(adapter.dispatch('unnest_range')(lo, hi)) }}
{%- endmacro %}

{% macro default__unnest_range(lo, hi) -%}
    {{ _not_portable('unnest_range') }}
{%- endmacro %}

{% macro duckdb__unnest_range(lo, hi) -%}
    unnest(range(
        {{ lo }},
        {{ hi }}
    ))
{%- endmacro %}

{% macro spark__unnest_range(lo, hi) -%}
    explode(sequence({{ lo }}, ({{ hi }}) - 1))
{%- endmacro %}

{#- A row value that orders by its fields in turn, for min_by / max_by. -#}
{% macro ordering_key(columns) -%}
    {{ return(adapter.dispatch('ordering_key')(columns)) }}
{%- endmacro %}

{% macro default__ordering_key(columns) -%}
    {{ _not_portable('ordering_key') }}
{%- endmacro %}

{% macro duckdb__ordering_key(columns) -%}
    struct_pack({{ columns | join(', ') }})
{%- endmacro %}

{% macro spark__ordering_key(columns) -%}
    struct({{ columns | join(', ') }})
{%- endmacro %}

{#- ------------------------------------------------------------------ query shape -#}

{#- `select * <star_except> (a, b)`: every column but those. -#}
{% macro star_except() -%}
    {{ return(adapter.dispatch('star_except')()) }}
{%- endmacro %}

{% macro default__star_except() -%}
    {{ _not_portable('star_except') }}
{%- endmacro %}

{% macro duckdb__star_except() -%}
    exclude
{%- endmacro %}

{% macro spark__star_except() -%}
    except
{%- endmacro %}

{#- `name <materialized_cte> (select ...)`: a CTE the optimiser must compute first, once
    (DuckDB's hint; Spark plans the CTE inline either way). -#}
{% macro materialized_cte() -%}
    {{ return(adapter.dispatch('materialized_cte')()) }}
{%- endmacro %}

{% macro default__materialized_cte() -%}
    {{ _not_portable('materialized_cte') }}
{%- endmacro %}

{% macro duckdb__materialized_cte() -%}
    as materialized
{%- endmacro %}

{% macro spark__materialized_cte() -%}
    as
{%- endmacro %}

{#- A number unique per row of a `materialized_cte()`, to join its rows back by an integer. DuckDB
    numbers the rows as they come (the CTE is computed once); Spark plans CTEs inline and wants an
    order for row_number, so it numbers them in the order of `columns`, which must be unique. -#}
{% macro row_key(columns) -%}
    {{ return(adapter.dispatch('row_key')(columns)) }}
{%- endmacro %}

{% macro default__row_key(columns) -%}
    {{ _not_portable('row_key') }}
{%- endmacro %}

{% macro duckdb__row_key(columns) -%}
    row_number() over ()
{%- endmacro %}

{% macro spark__row_key(columns) -%}
    row_number() over (order by {{ columns | join(', ') }})
{%- endmacro %}

{#- The materialization of a model built in slices (macros/sliced_table.sql): DuckDB builds
    one slice of its inputs at a time, to bound memory and spill; Spark plans a plain table
    (its shuffles bound each task's memory, and in_slice is then always true). -#}
{% macro sliced_table() -%}
    {{ return(adapter.dispatch('sliced_table')()) }}
{%- endmacro %}

{% macro default__sliced_table() -%}
    {{ _not_portable('sliced_table') }}
{%- endmacro %}

{% macro duckdb__sliced_table() -%}
    {{ return('sliced_table') }}
{%- endmacro %}

{% macro spark__sliced_table() -%}
    {{ return('table') }}
{%- endmacro %}

{#- Each row of `observed` (user_id, event_name, event_ts) with next_goal_ts, the first goal_ts
    of `goals` (user_id, goal_ts) of the same user strictly after event_ts (null if none). -#}
{% macro next_goal(observed, goals) -%}
    {{ return(adapter.dispatch('next_goal')(observed, goals)) }}
{%- endmacro %}

{% macro default__next_goal(observed, goals) -%}
    {{ _not_portable('next_goal') }}
{%- endmacro %}

{#- one ASOF join -#}
{% macro duckdb__next_goal(observed, goals) -%}
    select
        {{ observed }}.user_id,
        {{ observed }}.event_name,
        {{ observed }}.event_ts,
        {{ goals }}.goal_ts as next_goal_ts
    from {{ observed }}
    asof left join {{ goals }}
        on {{ goals }}.user_id = {{ observed }}.user_id
        and {{ goals }}.goal_ts > {{ observed }}.event_ts
{%- endmacro %}

{#- the same as one window over events and goals together: newest first, a goal after the
    events at its own timestamp, the smallest goal_ts seen so far (a growing frame, one sort per
    user; a "rows between 1 following" frame is quadratic in the user's events on Spark) -#}
{% macro spark__next_goal(observed, goals) -%}
    select
        user_id,
        event_name,
        event_ts,
        next_goal_ts
    from (
        select
            user_id,
            event_name,
            event_ts,
            is_goal_row,
            min(goal_ts) over (
                partition by user_id
                order by event_ts desc, is_goal_row asc
                rows between unbounded preceding and current row
            ) as next_goal_ts
        from (
            select
                user_id,
                event_name,
                event_ts,
                cast(null as timestamp) as goal_ts,
                0 as is_goal_row
            from {{ observed }}
            union all
            select
                user_id,
                cast(null as string) as event_name,
                goal_ts as event_ts,
                goal_ts,
                1 as is_goal_row
            from {{ goals }}
        ) as events_and_goals
    ) as with_next
    where is_goal_row = 0
{%- endmacro %}

