-- A control is never the treated user, and had no send in [t - window_hours, t + window_hours).
with controls as (
    select * from {{ ref('int_sends__controls') }}
),

treated as (
    select * from {{ ref('int_sends__to_score') }}
),

sends as (
    select * from {{ ref('stg_raw__sends') }}
)

select
    controls.send_id,
    controls.control_user_id,
    'control is the treated user' as problem
from controls
inner join treated
    on treated.send_id = controls.send_id
where controls.control_user_id = treated.user_id

union all

select
    controls.send_id,
    controls.control_user_id,
    'control was messaged in the window' as problem
from controls
inner join sends
    on sends.user_id = controls.control_user_id
    and sends.sent_ts >= controls.sent_ts - {{ hours(var('window_hours')) }}
    and sends.sent_ts < controls.sent_ts + {{ hours(var('window_hours')) }}
