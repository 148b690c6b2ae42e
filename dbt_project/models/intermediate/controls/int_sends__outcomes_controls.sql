{{ config(
    materialized=sliced_table(),
    slice_from='int_sends__to_measure',
    slice_by="date_trunc('hour', sent_ts)",
) }}
{%- set pre_match = var('pre_match_candidates') | int %}
-- Step 3, the controls' outcomes: Y_pre and Y_post of every control user of a send, at the
-- same send time t and with the same formula and weights as the treated user's
-- (decayed_outcomes, the weights of the send's weights_as_of).
-- With pre_match_candidates > 0, int_sends__controls lists more candidates than k and this
-- model keeps, per send, the k candidates nearest on
--   distance^2 + pre_match_weight * ((Y_pre(control) - Y_pre(treated)) / sd)^2
-- (distance: the features' Euclidean distance; sd: standard deviation of Y_pre over the
-- candidates of all sends at the same t, placebos apart, so that placebos leave the sends'
-- outcomes as they were; ties by the candidate's rank), so that the controls
-- also had the treated user's outcome in the pre window: their change then carries the same
-- regression to the mean as the treated user's, which the difference in differences removes.
-- The candidates get y_pre only; y_post is computed for the k kept (a tenth of them or less).
-- Built one slice of send hours at a time, like int_sends__controls (macros/sliced_table.sql):
-- the spread groups sends of the same t, so of the same hour.
-- pair_key numbers the (send, candidate) pairs of the slice: their outcomes are grouped by it.
with controls {{ materialized_cte() }} (
    select
        {{ row_key(['controls.send_id', 'controls.control_rank']) }} as pair_key,
        controls.send_id,
        controls.control_user_id as user_id,
        controls.sent_ts,
        controls.distance,
        controls.control_rank,
        to_measure.weights_as_of,
        to_measure.is_placebo
    from {{ ref('int_sends__controls') }} as controls
    inner join {{ ref('int_sends__to_measure') }} as to_measure
        on to_measure.send_id = controls.send_id
    where
        {{ in_slice('controls.sent_ts') }}
        and {{ in_slice('to_measure.sent_ts') }}
),

{%- if pre_match > 0 %}

-- the candidates are ranked on y_pre only: y_post is computed for the k kept below
candidate_pre as (
    {{ decayed_outcomes(
        'controls', sides=['pre'], key='pair_key', events_where=near_slice('event_ts', var('window_hours'))
    ) }}
),

candidate_outcomes as (
    select
        controls.send_id,
        controls.user_id,
        controls.sent_ts,
        controls.weights_as_of,
        controls.distance,
        controls.control_rank,
        controls.is_placebo,
        candidate_pre.y_pre
    from controls
    inner join candidate_pre
        on candidate_pre.pair_key = controls.pair_key
),

treated_outcomes as (
    select * from {{ ref('int_sends__outcomes_treated') }}
),

-- the spread of y_pre over the candidates of all sends at the same t, placebos apart
pre_spread as (
    select
        sent_ts,
        is_placebo,
        stddev_pop(y_pre) as pre_sd
    from candidate_outcomes
    group by sent_ts, is_placebo
),

scored as (
    select
        candidate_outcomes.*,
        pow(candidate_outcomes.distance, 2) + {{ var('pre_match_weight') }} * pow(coalesce(
            (candidate_outcomes.y_pre - treated_outcomes.y_pre) / nullif(pre_spread.pre_sd, 0), 0.0
        ), 2) as match_distance
    from candidate_outcomes
    inner join treated_outcomes
        on treated_outcomes.send_id = candidate_outcomes.send_id
    inner join pre_spread
        on pre_spread.sent_ts = candidate_outcomes.sent_ts
        and pre_spread.is_placebo = candidate_outcomes.is_placebo
),

-- the k nearest by one ranking window (a sort, which DuckDB spills under a memory limit; a
-- top-k min_by aggregate ran out of memory at 100k users with memory_limit 2GB); ties by the
-- candidate's rank
nearest as (
    select
        send_id,
        user_id,
        y_pre,
        sent_ts,
        weights_as_of
    from scored
    qualify row_number() over (
        partition by send_id order by match_distance, control_rank
    ) <= {{ var('neighbours') }}
),

post_outcomes as (
    {{ decayed_outcomes(
        'nearest', sides=['post'], events_where=near_slice('event_ts', var('window_hours'))
    ) }}
),

kept as (
    select
        nearest.send_id,
        nearest.user_id,
        nearest.y_pre,
        post_outcomes.y_post
    from nearest
    inner join post_outcomes
        on post_outcomes.send_id = nearest.send_id
        and post_outcomes.user_id = nearest.user_id
),
{%- else %}

kept as (
    {{ decayed_outcomes('controls', events_where=near_slice('event_ts', var('window_hours'))) }}
),
{%- endif %}

renamed as (
    select
        send_id,
        user_id as control_user_id,
        y_pre,
        y_post
    from kept
)

select * from renamed
