{#- Building blocks of the method, written once and used by several models. -#}

{#- The as-of time of the run: only data timestamped strictly before it is used. measure.py
    passes it in the environment variable NUDGEFLOW_AS_OF (a var that changes every day would
    make dbt re-parse the whole project on every run); `--vars '{as_of: ...}'` overrides it. -#}
{% macro as_of() -%}
    {%- set value = var("as_of", none) or env_var("NUDGEFLOW_AS_OF", "") -%}
    {%- if not value and execute -%}
        {{ exceptions.raise_compiler_error("as_of is not set: pass NUDGEFLOW_AS_OF or --vars '{as_of: ...}'") }}
    {%- endif -%}
    cast('{{ value }}' as timestamp)
{%- endmacro %}

{#- An interval of (possibly fractional) hours. -#}
{% macro hours(value) -%}
    to_microseconds(cast(round(({{ value }}) * 3600000000) as bigint))
{%- endmacro %}

{#- Signed hours from timestamp a to timestamp b. -#}
{% macro hours_between(a, b) -%}
    (date_diff('microsecond', {{ a }}, {{ b }}) / 3600000000.0)
{%- endmacro %}

{#- Global holdout, a stable hash of user_id: the first 32 bits of md5(user_id) as a number in
    [0, 1) compared with holdout_fraction. Python reads user_features.is_holdout, never recomputes. -#}
{% macro is_holdout(user_id) -%}
    ((('0x' || left(md5({{ user_id }}), 8))::ubigint / 4294967296.0) < {{ var('holdout_fraction') }})
{%- endmacro %}

{#- The frequency buckets of the frequency_bucket_hours edges, shortest first: for [36, 84, 180]
    '<36h', '36-84h', '84-180h', '>=180h' (as plugins/nudgeflow/matching.py names them). -#}
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

{#- Decayed outcomes of eq. (1) of the paper around each send time t, for the (send_id, user_id,
    sent_ts, weights_as_of) rows of the relation or CTE `pairs`, over the events of
    int_events__in_windows weighted by event_weights_history:
        y_pre  = sum over events in [t - window, t) of  w_e * 2^(-|t_e - t| / half_life)
        y_post = sum over events in [t, t + window) of  w_e * 2^(-|t_e - t| / half_life)
    with w_e the weight of the event's name at the pair's weights_as_of (0 without a row).
    An event exactly at t is post; one at t - window is pre; one at t + window is outside.
    A pair with no events has y_pre = y_post = 0. -#}
{% macro decayed_outcomes(pairs) -%}
    select
        pairs.send_id,
        pairs.user_id,
        coalesce(sum(
            coalesce(weights.weight, 0.0)
            * pow(2.0, -abs({{ hours_between('pairs.sent_ts', 'events.event_ts') }}) / {{ var('half_life_hours') }})
        ) filter (where events.event_ts < pairs.sent_ts), 0.0) as y_pre,
        coalesce(sum(
            coalesce(weights.weight, 0.0)
            * pow(2.0, -abs({{ hours_between('pairs.sent_ts', 'events.event_ts') }}) / {{ var('half_life_hours') }})
        ) filter (where events.event_ts >= pairs.sent_ts), 0.0) as y_post
    from {{ pairs }} as pairs
    left join {{ ref('int_events__in_windows') }} as events
        on events.user_id = pairs.user_id
        and events.event_ts >= pairs.sent_ts - {{ hours(var('window_hours')) }}
        and events.event_ts < pairs.sent_ts + {{ hours(var('window_hours')) }}
    left join {{ ref('event_weights_history') }} as weights
        on weights.weights_as_of = pairs.weights_as_of
        and weights.event_name = events.event_name
    group by pairs.send_id, pairs.user_id
{%- endmacro %}
