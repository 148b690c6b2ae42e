-- The method, explained once: docs block method_action_outcomes (models/method.md).
-- Step 4: the evidence of each (user, action) for the Beta-Bernoulli posteriors: over the
-- user's scored sends matured by as_of that took the action, successes = sum of rewards and
-- trials = number of sends; and the same with forgetting, each send weighted by
-- 2^(-age / evidence_half_life_days), age = as_of - matured_at in days (no forgetting when
-- evidence_half_life_days is 0). The Python steps read the weighted pair.
{%- set half_life = var('evidence_half_life_days') | float %}
with send_actions as (
    select
        *,
        {%- if half_life > 0 %}
        pow(2.0, -{{ hours_between('matured_at', as_of()) }} / 24.0 / {{ half_life }})
        {%- else %}
        1.0
        {%- endif %} as evidence_weight
    from {{ ref('send_actions') }}
    where is_scored
),

aggregated as (
    select
        user_id,
        action_set,
        action,
        cast(sum(reward) as bigint) as successes,
        cast(count(*) as bigint) as trials,
        cast(sum(reward * evidence_weight) as double) as weighted_successes,
        cast(sum(evidence_weight) as double) as weighted_trials
    from send_actions
    group by user_id, action_set, action
)

select * from aggregated
-- stored by user: the priors step reads it a chunk of users at a time (user_id between), and
-- DuckDB skips the row groups outside a chunk by their min and max
order by user_id, action_set, action
