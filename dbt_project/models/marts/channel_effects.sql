-- Measured effects for BI: per send day and channel, the sends, how many were scored, their
-- mean difference-in-differences effect and the share that worked (reward 1), over the sends
-- measured by as_of (send_outcomes).
with outcomes as (
    select * from {{ ref('send_outcomes') }}
    where matured_at <= {{ as_of() }}
),

final as (
    select
        cast(sent_ts as date) as send_date,
        channel,
        cast(count(*) as bigint) as sends,
        cast(count(*) filter (where is_scored) as bigint) as scored_sends,
        cast(avg(delta_y) filter (where is_scored) as double) as mean_delta_y,
        cast(avg(reward) filter (where is_scored) as double) as reward_share
    from outcomes
    group by cast(sent_ts as date), channel
)

select * from final
