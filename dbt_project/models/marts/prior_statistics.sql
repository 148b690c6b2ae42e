{{ config(materialized='table') }}
-- Step 4: what the empirical-Bayes priors need of the users' evidence, per kind of cell, cell
-- and action: sums over the users with evidence (weighted_trials > 0) of action_outcomes, so
-- the priors step fits them without a pass over users (decide/priors.py,
-- prior_from_statistics). Two kinds of cells, as the setting prior_cells chooses:
-- 'behaviour' (user_features.prior_cell) and 'matching' (user_features.cell).
with outcomes as (
    select
        user_id,
        action_set,
        action,
        weighted_successes as successes,
        weighted_trials as trials
    from {{ ref('action_outcomes') }}
    where weighted_trials > 0
),

users as (
    select
        user_id,
        prior_cell,
        cell
    from {{ ref('user_features') }}
),

in_cells as (
    select
        'behaviour' as cells,
        users.prior_cell as cell,
        outcomes.*
    from outcomes
    inner join users
        on users.user_id = outcomes.user_id
    union all
    select
        'matching' as cells,
        users.cell,
        outcomes.*
    from outcomes
    inner join users
        on users.user_id = outcomes.user_id
)

select
    cells,
    cell,
    action_set,
    action,
    count(*) as n_users,
    sum(trials) as trials,
    sum(successes) as successes,
    sum(successes * successes / trials) as sum_sq
from in_cells
group by cells, cell, action_set, action
