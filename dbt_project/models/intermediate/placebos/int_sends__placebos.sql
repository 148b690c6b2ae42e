{{ config(materialized='table') }}
{%- set window_us = (var('window_hours') * 3600000000) | int %}
-- The method, explained once: docs block method_placebos (models/method.md).
-- Placebos, step 1: a send that did nothing, measured exactly like a real one. For the
-- placebo_sends sends of each weights date first in md5(send_id) order (all of a small
-- batch; per weights date, so that daily runs and one full recompute pick the same), the
-- placebo is the nearest user (feature distance; ties by md5(user_id), then user_id) of the
-- treated user's pool on the send's day who
--   * is not the treated user and has no send in [t, t + window_hours) (not treated at t), and
--   * has the treated user's gap bin: the last send in [t - window_hours, t) falls in the same
--     gap_bin_hours bin of hours before t as the treated user's previous send ('none': no send
--     in the pre window), so that the placebo's pre window holds a previous send's effect
--     exactly when the treated user's does.
-- The placebo is scored at the send's time t, with its own controls and the send's weights
-- (int_sends__to_measure); a send with no such user has no placebo.
with sampled as (
    select
        send_id,
        user_id,
        sent_ts,
        matured_at,
        weights_as_of,
        gap_bin,
        {{ epoch_us('sent_ts') }} as sent_us,
        date_trunc('day', sent_ts) as feature_date
    from {{ ref('int_sends__to_score') }}
    qualify row_number() over (
        partition by weights_as_of order by md5(send_id), send_id
    ) <= {{ var('placebo_sends') }}
),

pools as (
    select * from {{ ref('int_user_features__pools') }}
),

treated as (
    {{ in_pools('sampled') }}
),

candidates as (
    select
        treated.send_id,
        candidate.user_id,
        candidate.user_hash,
        candidate.cell,
        {{ feature_distance('candidate', 'treated') }} as distance,
        {{ max_in_window(
            'send_times.sent_us', 'treated.sent_us - ' ~ window_us, 'treated.sent_us'
        ) }} as last_pre_us,
        coalesce({{ any_in_window(
            'send_times.sent_us', 'treated.sent_us', 'treated.sent_us + ' ~ window_us
        ) }}, false) as is_sent_at_t,
        treated.sent_us,
        treated.gap_bin
    from treated
    inner join pools as candidate
        on candidate.feature_date = treated.feature_date
        and candidate.pool = treated.pool
        and candidate.user_id <> treated.user_id
    left join {{ ref('int_users__send_times') }} as send_times
        on send_times.user_id = candidate.user_id
),

eligible as (
    select *
    from candidates
    where
        not is_sent_at_t
        and {{ gap_bin('(sent_us - last_pre_us) / 3600000000') }} = gap_bin
),

nearest as (
    select
        send_id,
        min_by(user_id, {{ ordering_key(['distance', 'user_hash', 'user_id']) }}) as placebo_user_id,
        min_by(cell, {{ ordering_key(['distance', 'user_hash', 'user_id']) }}) as placebo_cell
    from eligible
    group by send_id
),

placebos as (
    select
        'placebo:' || sampled.send_id as send_id,
        sampled.send_id as source_send_id,
        nearest.placebo_user_id as user_id,
        nearest.placebo_cell as cell,
        sampled.sent_ts,
        sampled.matured_at,
        sampled.weights_as_of,
        sampled.gap_bin
    from nearest
    inner join sampled
        on sampled.send_id = nearest.send_id
)

select * from placebos
