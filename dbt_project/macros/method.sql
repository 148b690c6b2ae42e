{#- Building blocks of the method, written once and used by several models. -#}

{#- The as-of time of the run: only data timestamped strictly before it is used. plugins/nudgeflow/steps/measure.py
    passes it in the environment variable NUDGEFLOW_AS_OF (a var that changes every day would
    make dbt re-parse the whole project on every run); `--vars '{as_of: ...}'` overrides it. -#}
{% macro as_of() -%}
    {%- set value = var("as_of", none) or env_var("NUDGEFLOW_AS_OF", "") -%}
    {%- if not value and execute -%}
        {{ exceptions.raise_compiler_error("as_of is not set: pass NUDGEFLOW_AS_OF or --vars '{as_of: ...}'") }}
    {%- endif -%}
    cast('{{ value }}' as timestamp)
{%- endmacro %}

{#- A text setting as a SQL string literal: quotes doubled, so a value is data, never SQL.
    (Python passes text vars inside raw blocks, so they are never rendered as Jinja either.) -#}
{% macro sql_text(value) -%}
    '{{ value | string | replace("'", "''") }}'
{%- endmacro %}

{#- hours(value), hours_between(a, b) and is_holdout(user_id) differ by engine: macros/portable.sql. -#}

{#- The frequency buckets of the frequency_bucket_hours edges, shortest first: for [36, 84, 180]
    '<36h', '36-84h', '84-180h', '>=180h' (as plugins/nudgeflow/decide/action_space.py names them). -#}
{% macro frequency_bucket_labels() -%}
    {%- set edges = var('frequency_bucket_hours') | map('int') | list -%}
    {%- set labels = ['<' ~ edges[0] ~ 'h'] -%}
    {%- for i in range(1, edges | length) -%}
        {%- do labels.append(edges[i - 1] ~ '-' ~ edges[i] ~ 'h') -%}
    {%- endfor -%}
    {%- do labels.append('>=' ~ edges[-1] ~ 'h') -%}
    {{ return(labels) }}
{%- endmacro %}

{#- The frequency action of a send from the hours since the user's previous send: buckets
    [0, e1), [e1, e2), ..., [e_n, inf) of the edges (left-closed); a first send (null gap)
    is in the last bucket. -#}
{% macro frequency_bucket(gap_hours) -%}
    {%- set edges = var('frequency_bucket_hours') | map('int') | list -%}
    {%- set labels = frequency_bucket_labels() -%}
    case
        when {{ gap_hours }} is null then '{{ labels[-1] }}'
    {%- for edge in edges %}
        when {{ gap_hours }} < {{ edge }} then '{{ labels[loop.index0] }}'
    {%- endfor %}
        else '{{ labels[-1] }}'
    end
{%- endmacro %}

{#- The bins of the gap since the user's previous send that the gap adjustment uses: within
    the pre window, [0, b), [b, 2b), ... of width b = gap_bin_hours (the last one cut at
    window_hours), labelled '0-12h', '12-24h', ...; 'none' when no send is in the pre window. -#}
{% macro gap_bin_labels() -%}
    {%- set width = var('gap_bin_hours') | float -%}
    {%- set window = var('window_hours') | float -%}
    {%- set labels = [] -%}
    {%- for i in range((window / width) | round(0, 'ceil') | int) -%}
        {%- do labels.append('%g' | format(i * width) ~ '-' ~ '%g' | format([(i + 1) * width, window] | min) ~ 'h') -%}
    {%- endfor -%}
    {%- do labels.append('none') -%}
    {{ return(labels) }}
{%- endmacro %}

{#- The gap bin of a send at t from the hours since the user's previous send (null: none). -#}
{% macro gap_bin(gap_hours) -%}
    {%- set width = var('gap_bin_hours') | float -%}
    {%- set labels = gap_bin_labels() -%}
    case
        when {{ gap_hours }} is null or {{ gap_hours }} >= {{ var('window_hours') }} then 'none'
    {%- for label in labels[:-1] %}
        when {{ gap_hours }} < {{ (loop.index * width) }} then '{{ label }}'
    {%- endfor %}
        else 'none'
    end
{%- endmacro %}

{#- The rows of `rows` (a CTE with user_id and feature_date) with the pool and the z-scores of
    their user at that date (CTE `pools` = int_user_features__pools): the treated side of the
    equi-join on (feature_date, pool) that controls and placebos make. -#}
{% macro in_pools(rows) -%}
    select
        {{ rows }}.*,
        pools.pool,
        pools.z_events,
        pools.z_goals,
        pools.z_active_days,
        pools.z_recency
    from {{ rows }}
    inner join pools
        on pools.user_id = {{ rows }}.user_id
        and pools.feature_date = {{ rows }}.feature_date
{%- endmacro %}

{#- The distance of coarsened exact matching inside a cell: Euclidean, on the four z-scores of
    int_user_features__dated, between the rows a and b. -#}
{% macro feature_distance(a, b) -%}
    sqrt(
        pow({{ a }}.z_events - {{ b }}.z_events, 2)
        + pow({{ a }}.z_goals - {{ b }}.z_goals, 2)
        + pow({{ a }}.z_active_days - {{ b }}.z_active_days, 2)
        + pow({{ a }}.z_recency - {{ b }}.z_recency, 2)
    )
{%- endmacro %}

{#- Decayed outcomes of eq. (1) of the paper around each send time t, for the (send_id, user_id,
    sent_ts, weights_as_of) rows of the relation or CTE `pairs` (one row per (send_id, user_id)),
    over the events of int_events__in_windows weighted by event_weights_history:
        y_pre  = sum over events in [t - window, t) of  w_e * 2^(-|t_e - t| / half_life)
        y_post = sum over events in [t, t + window) of  w_e * 2^(-|t_e - t| / half_life)
    with w_e the weight of the event's name at the pair's weights_as_of (0 without a row).
    An event exactly at t is post; one at t - window is pre; one at t + window is outside.
    A pair with no events has y_pre = y_post = 0. `sides` picks the columns: ['pre'] for the
    candidates that are only ranked on y_pre, ['post'] for the controls kept after it; the
    columns of `carry` are passed through (their value for the pair); `events_where`, a
    condition on the events (event_ts), can narrow them to those the pairs can reach (a slice);
    `key`, a column of `pairs` unique per pair (an integer), groups by it instead of
    (send_id, user_id) and is the output's key (cheaper than two text columns).

    The events are joined on (user_id, time bucket), the buckets being window_hours / 2 long,
    and each pair is unnested into the 2 to 5 buckets its windows overlap: the join then reads
    about 1.5 windows of the user's events per side instead of all the user's events of the
    batch (a first run's whole history), and stays one equi-join on every engine. -#}
{% macro decayed_outcomes(pairs, sides=['pre', 'post'], carry=[], events_where=none, key=none) -%}
    {%- set keys = [key] if key else ['send_id', 'user_id'] -%}
    {%- set window_us = (var('window_hours') * 3600000000) | int -%}
    {%- set bucket_us = [window_us // 2, 1] | max -%}
    {%- set lo = ('pairs.sent_us - ' ~ window_us) if 'pre' in sides else 'pairs.sent_us' -%}
    {%- set hi = ('pairs.sent_us + ' ~ window_us) if 'post' in sides else 'pairs.sent_us' -%}
    {%- set decayed -%}
        coalesce(weights.weight, 0.0)
        * pow(2.0, -abs({{ hours_between('pairs.sent_ts', 'events.event_ts') }}) / {{ var('half_life_hours') }})
    {%- endset %}
    select
        {%- for column in keys %}
        pairs.{{ column }}{{ ',' if not loop.last }}
        {%- endfor %}
        {%- for column in carry %},
        any_value(pairs.{{ column }}) as {{ column }}
        {%- endfor %}
        {%- if 'pre' in sides %},
        coalesce(sum({{ decayed }}) filter (where events.event_ts < pairs.sent_ts), 0.0) as y_pre
        {%- endif %}
        {%- if 'post' in sides %},
        coalesce(sum({{ decayed }}) filter (where events.event_ts >= pairs.sent_ts), 0.0) as y_post
        {%- endif %}
    from (
        select
            {%- for column in keys if column != 'user_id' %}
            {{ column }},
            {%- endfor %}
            user_id,
            sent_ts,
            weights_as_of,
            {%- for column in carry if column not in ['sent_ts', 'weights_as_of'] %}
            {{ column }},
            {%- endfor %}
            {{ epoch_us('sent_ts') }} as sent_us,
            {{ unnest_range(
                int_div('(' ~ epoch_us('sent_ts') ~ ((' - ' ~ window_us) if 'pre' in sides else '') ~ ')', bucket_us),
                int_div('(' ~ epoch_us('sent_ts') ~ ((' + ' ~ window_us) if 'post' in sides else '') ~ ' - 1)', bucket_us)
                ~ ' + 1'
            ) }} as time_bucket
        from {{ pairs }}
    ) as pairs
    left join (
        select
            user_id,
            event_name,
            event_ts,
            {{ int_div(epoch_us('event_ts'), bucket_us) }} as time_bucket
        from {{ ref('int_events__in_windows') }}
        {%- if events_where %}
        where {{ events_where }}
        {%- endif %}
    ) as events
        on events.user_id = pairs.user_id
        and events.time_bucket = pairs.time_bucket
        and {{ epoch_us('events.event_ts') }} >= {{ lo }}
        and {{ epoch_us('events.event_ts') }} < {{ hi }}
    left join {{ ref('event_weights_history') }} as weights
        on weights.weights_as_of = pairs.weights_as_of
        and weights.event_name = events.event_name
    group by {% for column in keys %}pairs.{{ column }}{{ ', ' if not loop.last }}{% endfor %}
{%- endmacro %}

{#- The per-user strata of the event weights (Mantel-Haenszel, see event_weights_history),
    for the weights dates of the relation or CTE `horizons` (weights_as_of, horizon_start,
    horizon_end, horizon_us): per (weights_as_of, user_id, event_name) the user's events of the
    horizon that are / are not followed by a goal (n_followed, n_not_followed), the user's
    followed time in it (us_followed, microseconds) and the horizon's length (horizon_us).
    event_weights_history sums them; marts.event_weight_strata keeps those of the as-of date
    (for intervals that resample users). -#}
{% macro event_weight_strata(horizons) -%}
    with per_user as (
        select
            horizons.weights_as_of,
            labelled.user_id,
            labelled.event_name,
            count(*) filter (where labelled.is_followed) as n_followed,
            count(*) filter (where not labelled.is_followed) as n_not_followed
        from {{ horizons }} as horizons
        inner join {{ ref('int_events__goal_followed') }} as labelled
            on labelled.event_ts >= horizons.horizon_start
            and labelled.event_ts < horizons.horizon_end
        group by all
    ),

    followed_time as (
        select
            horizons.weights_as_of,
            goals.user_id,
            sum(
                {{ epoch_us('least(goals.goal_ts, horizons.horizon_end)') }}
                - {{ epoch_us('greatest(goals.followed_from, horizons.horizon_start)') }}
            ) as us_followed
        from {{ horizons }} as horizons
        inner join {{ ref('int_goals__followed_time') }} as goals
            on goals.goal_ts > horizons.horizon_start
            and goals.followed_from < horizons.horizon_end
        group by all
    )

    select
        per_user.*,
        horizons.horizon_us,
        coalesce(followed_time.us_followed, 0) as us_followed
    from per_user
    inner join {{ horizons }} as horizons
        on horizons.weights_as_of = per_user.weights_as_of
    left join followed_time
        on followed_time.weights_as_of = per_user.weights_as_of
        and followed_time.user_id = per_user.user_id
{%- endmacro %}

{#- The horizon of each weights date of the relation or CTE `dates` (weights_as_of): event_ts in
    [d - weight_horizon_days, d - weight_window_hours), horizon_us long. -#}
{% macro weight_horizons(dates) -%}
    select
        weights_as_of,
        weights_as_of - {{ hours(var('weight_horizon_days') ~ ' * 24') }} as horizon_start,
        weights_as_of - {{ hours(var('weight_window_hours')) }} as horizon_end,
        {{ epoch_us('weights_as_of - ' ~ hours(var('weight_window_hours'))) }}
        - {{ epoch_us('weights_as_of - ' ~ hours(var('weight_horizon_days') ~ ' * 24')) }} as horizon_us
    from {{ dates }}
{%- endmacro %}

{#- Step 1's label: an event at event_ts is followed when the user's next goal comes within
    weight_window_hours, in (event_ts, event_ts + weight_window_hours] (never null). -#}
{% macro is_followed(next_goal_ts, event_ts) -%}
    coalesce({{ next_goal_ts }} <= {{ event_ts }} + {{ hours(var('weight_window_hours')) }}, false)
{%- endmacro %}

{#- Whether event_weights_history has a new weights date other than as_of (the weights dates
    of its batch of sends not in the table yet); true where nothing can be read (parsing,
    linting; unit tests override it). -#}
{% macro other_new_weights_dates() -%}
    {%- if not execute or load_relation(ref('int_sends__to_score')) is none -%}
        {{ return(true) }}
    {%- endif -%}
    {%- set query -%}
        select count(*)
        from (select distinct weights_as_of from {{ ref('int_sends__to_score') }}) as dates
        where
            weights_as_of <> {{ as_of() }}
            {%- if is_incremental() %}
            and weights_as_of not in (select distinct weights_as_of from {{ this }})
            {%- endif %}
    {%- endset -%}
    {{ return(run_query(query).columns[0].values()[0] > 0) }}
{%- endmacro %}

{#- Step 1's followed time: per goal (user_id, goal_ts) of `goals`, the part of
    [goal_ts - weight_window_hours, goal_ts) not covered by the user's previous goal,
    [followed_from, goal_ts): disjoint intervals whose union is the user's followed time. A
    goal's interval needs the previous goal only when that is within weight_window_hours of it. -#}
{% macro followed_intervals(goals) -%}
    select
        user_id,
        goal_ts,
        greatest(
            goal_ts - {{ hours(var('weight_window_hours')) }},
            coalesce(
                lag(goal_ts) over (partition by user_id order by goal_ts),
                goal_ts - {{ hours(var('weight_window_hours')) }}
            )
        ) as followed_from
    from {{ goals }}
{%- endmacro %}

{#- The end of what Step 1 labels: events before as_of - weight_window_hours have their
    follow window fully observed. -#}
{% macro label_cutoff() -%}
    {{ as_of() }} - {{ hours(var('weight_window_hours')) }}
{%- endmacro %}

{#- The goal events (user_id, goal_ts) of stg_raw__events that meet `condition` (on event_ts). -#}
{% macro goal_events(condition='true') -%}
    select
        user_id,
        event_ts as goal_ts
    from {{ ref('stg_raw__events') }}
    where
        event_name = {{ sql_text(var('goal_event')) }}
        and {{ condition }}
{%- endmacro %}
