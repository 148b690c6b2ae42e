-- Step 4: the actions each measured send took, long format: one row per (send, action set),
-- action sets channel, send_hour, frequency and label_<dimension> (macros/method.sql,
-- action_rows), with the send's reward. Only sends with matured_at <= as_of, so a run for an
-- earlier date sees what it saw then.
-- A view for the analyst (storing it wrote one row per send and action set every run: tens
-- of millions at a million users); the users' evidence (int_user_actions__evidence) makes the
-- same rows from the same macro for the sends it adds.
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

-- joined send by send first, then one row per action set
sends as (
    select
        outcomes.*,
        actions.message_id,
        actions.channel,
        actions.send_hour,
        actions.frequency
    from outcomes
    inner join {{ ref('int_sends__actions') }} as actions
        on actions.send_id = outcomes.send_id
),

long_actions as (
    {{ action_rows('sends', ['send_id', 'user_id', 'matured_at', 'reward', 'is_scored']) }}
)

select
    send_id,
    user_id,
    matured_at,
    action_set,
    action,
    reward,
    is_scored
from long_actions
