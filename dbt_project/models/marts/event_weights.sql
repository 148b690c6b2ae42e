-- Step 1: w_e = ln(P(e | Goal) / P(e | no Goal)) per event name, over the events of the
-- weight horizon (int_events__goal_followed), with Laplace smoothing (alpha = 1):
--   P(e | Goal)    = (n_followed_e + 1)     / (N_followed + V)
--   P(e | no Goal) = (n_not_followed_e + 1) / (N_not_followed + V)
-- where V is the number of distinct event names in the horizon.
with labelled as (
    select * from {{ ref('int_events__goal_followed') }}
),

counts as (
    select
        event_name,
        count(*) as n_events,
        count(*) filter (where is_followed) as n_followed,
        count(*) filter (where not is_followed) as n_not_followed
    from labelled
    group by event_name
),

totals as (
    select
        sum(n_followed) as total_followed,
        sum(n_not_followed) as total_not_followed,
        count(*) as vocabulary_size
    from counts
),

probabilities as (
    select
        counts.event_name,
        counts.n_events,
        counts.n_followed,
        counts.n_not_followed,
        cast(counts.n_followed + 1 as double)
        / cast(totals.total_followed + totals.vocabulary_size as double) as p_given_goal,
        cast(counts.n_not_followed + 1 as double)
        / cast(totals.total_not_followed + totals.vocabulary_size as double) as p_given_no_goal
    from counts
    cross join totals
),

weights as (
    select
        event_name,
        cast(n_events as bigint) as n_events,
        cast(n_followed as bigint) as n_followed,
        cast(n_not_followed as bigint) as n_not_followed,
        p_given_goal,
        p_given_no_goal,
        ln(p_given_goal / p_given_no_goal) as weight
    from probabilities
)

select * from weights
