-- Step 4: the evidence of each (user, action) for the Beta-Bernoulli posteriors: over the
-- user's scored sends matured by as_of that took the action, successes = sum of rewards and
-- trials = number of sends.
with send_actions as (
    select * from {{ ref('send_actions') }}
    where is_scored
),

aggregated as (
    select
        user_id,
        action_set,
        action,
        cast(sum(reward) as bigint) as successes,
        cast(count(*) as bigint) as trials
    from send_actions
    group by user_id, action_set, action
)

select * from aggregated
