-- Step 4: the actions each measured send took, long format: one row per (send, action set),
-- action sets channel, send_hour, frequency and label_<dimension>, with the send's reward.
-- Only sends with matured_at <= as_of, so a run for an earlier date sees what it saw then.
-- A view: action_outcomes, its one reader, aggregates it in the same statement (storing it
-- wrote one row per send and action set every run: tens of millions at a million users).
{{ config(materialized='view') }}
with outcomes as (
    select
        send_id,
        user_id,
        matured_at,
        reward,
        is_scored
    from {{ ref('send_outcomes') }}
    where matured_at <= {{ as_of() }}
),

actions as (
    select * from {{ ref('int_sends__actions') }}
),

labels as (
    select * from {{ ref('int_messages__labels') }}
),

long_actions as (
    select
        send_id,
        'channel' as action_set,
        channel as action
    from actions
    union all
    select
        send_id,
        'send_hour' as action_set,
        send_hour as action
    from actions
    union all
    select
        send_id,
        'frequency' as action_set,
        frequency as action
    from actions
    union all
    select
        actions.send_id,
        labels.action_set,
        labels.action
    from actions
    inner join labels
        on labels.message_id = actions.message_id
),

joined as (
    select
        outcomes.send_id,
        outcomes.user_id,
        outcomes.matured_at,
        long_actions.action_set,
        long_actions.action,
        outcomes.reward,
        outcomes.is_scored
    from outcomes
    inner join long_actions
        on long_actions.send_id = outcomes.send_id
)

select * from joined
