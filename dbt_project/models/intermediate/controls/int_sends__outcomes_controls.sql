{{ config(materialized='table') }}
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
with controls as (
    select
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
),

{%- if pre_match > 0 %}

-- the candidates are ranked on y_pre only: y_post is computed for the k kept below
candidate_outcomes as (
    {{ decayed_outcomes('controls', sides=['pre']) }}
),

treated_outcomes as (
    select * from {{ ref('int_sends__outcomes_treated') }}
),

scored as (
    select
        candidate_outcomes.send_id,
        candidate_outcomes.user_id,
        candidate_outcomes.y_pre,
        controls.distance,
        controls.control_rank,
        treated_outcomes.y_pre as treated_y_pre,
        stddev_pop(candidate_outcomes.y_pre) over (partition by controls.sent_ts, controls.is_placebo) as pre_sd
    from candidate_outcomes
    inner join controls
        on controls.send_id = candidate_outcomes.send_id
        and controls.user_id = candidate_outcomes.user_id
    inner join treated_outcomes
        on treated_outcomes.send_id = candidate_outcomes.send_id
),

nearest as (
    select
        scored.send_id,
        scored.user_id,
        scored.y_pre
    from scored
    qualify row_number() over (
        partition by send_id
        order by
            pow(distance, 2) + {{ var('pre_match_weight') }}
            * pow(coalesce((y_pre - treated_y_pre) / nullif(pre_sd, 0), 0.0), 2),
            control_rank
    ) <= {{ var('neighbours') }}
),

nearest_pairs as (
    select
        nearest.send_id,
        nearest.user_id,
        controls.sent_ts,
        controls.weights_as_of
    from nearest
    inner join controls
        on controls.send_id = nearest.send_id
        and controls.user_id = nearest.user_id
),

post_outcomes as (
    {{ decayed_outcomes('nearest_pairs', sides=['post']) }}
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
    {{ decayed_outcomes('controls') }}
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
