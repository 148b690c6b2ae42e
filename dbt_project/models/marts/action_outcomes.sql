-- The method, explained once: docs block method_action_outcomes (models/method.md).
-- Step 4: the evidence of each (user, action) for the Beta-Bernoulli posteriors: over the
-- user's scored sends matured by as_of that took the action, successes = sum of rewards and
-- trials = number of sends; and the same with forgetting, each send weighted by
-- 2^(-age / evidence_half_life_days), age = as_of - matured_at in days (no forgetting when
-- evidence_half_life_days is 0). The Python steps read the weighted pair.
-- A view of the evidence kept by int_user_actions__evidence: its weighted sums as of the
-- run that last changed a user's rows (evidence_as_of), brought to as_of by one factor (the
-- weight factorises: macros/method.sql, evidence_decay). Stored by user, so a reader of a
-- chunk of users (user_id between) reads only their row groups.
{{ config(materialized='view') }}
with evidence as (
    select * from {{ ref('int_user_actions__evidence') }}
    where trials > 0
)

select
    user_id,
    action_set,
    action,
    successes,
    trials,
    decayed_successes * {{ evidence_decay('evidence_as_of') }} as weighted_successes,
    decayed_trials * {{ evidence_decay('evidence_as_of') }} as weighted_trials
from evidence
