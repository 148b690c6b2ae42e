{{ config(
    materialized=kept_table(),
    incremental_strategy='delete+insert',
    unique_key='user_id',
    on_schema_change='sync_all_columns',
) }}
-- depends_on: {{ ref('int_sends__to_score') }}
-- Step 4, the users' evidence, kept incrementally: per (user, action set, action), over the
-- user's scored sends matured by as_of that took the action, successes and trials, and the
-- same weighted by forgetting as of evidence_as_of (decayed_*; marts.action_outcomes brings
-- them to as_of with one factor, macros/method.sql evidence_decay). A daily run adds the
-- sends scored since the last run instead of summing the whole history again.
--
-- What a user's rows hold is checked, not assumed: each row carries the count (user_sends) and
-- a checksum (user_checksum: bit_xor of row_checksum) of the user's counted sends, of their
-- rewards and of the actions they are counted under (channel, send hour, frequency and the
-- message's labels). A run recomputes from all their sends the users whose sends matured by
-- the last run's as_of (this run's batch, int_sends__to_score, apart) no longer give the
-- stored count and checksum: a send scored late, a send hour moved by a new timezone, a
-- frequency moved by a send landed late, a message's labels changed. The others keep their
-- rows, brought to as_of, plus their new sends. So after every run the table gives what one
-- full build at its as_of would. A run for an earlier as_of, a changed
-- evidence_half_life_days or a table of an earlier version recompute every user; a user left
-- without evidence keeps one row with trials 0 (marts.action_outcomes leaves it out), which
-- deletes the user's old rows.
{%- set half_life = var('evidence_half_life_days') | float %}
{%- set columns = [
    'user_id', 'action_set', 'action', 'successes', 'trials', 'decayed_successes', 'decayed_trials',
    'evidence_as_of', 'user_sends', 'user_checksum', 'half_life_days',
] %}
{#- mode: 'build' (a full build: no table yet, --full-refresh, Spark), 'rebuild' (every user
    recomputed, the table's rows replaced) or 'add' (the users' new sends added) -#}
{%- set mode = 'build' %}
{%- set last_as_of = none %}
{%- if is_incremental() %}
    {%- set mode = 'rebuild' %}
    {%- set present = adapter.get_columns_in_relation(this) | map(attribute='name') | map('lower') | list %}
    {%- if execute and columns | reject('in', present) | list | length == 0 %}
        {%- set state = run_query(
            "select strftime(max(evidence_as_of), '%Y-%m-%d %H:%M:%S.%f'), "
            ~ "coalesce(max(evidence_as_of) <= " ~ as_of() ~ " and bool_and(half_life_days = " ~ half_life ~ "), false) "
            ~ "from " ~ this
        ).rows[0] %}
        {%- if state[1] %}
            {%- set mode = 'add' %}
            {%- set last_as_of = "cast('" ~ state[0] ~ "' as timestamp)" %}
        {%- endif %}
    {%- endif %}
{%- endif %}
{%- if execute %}
    {%- do log(this.name ~ ": " ~ {
        'build': "building every user's evidence (a first build, a full refresh or a plain table)",
        'rebuild': "recomputing every user (a run for an earlier as_of, a changed evidence_half_life_days, "
            ~ "an empty table or one of an earlier version)",
        'add': "adding the sends scored since " ~ (state[0] if mode == 'add' else '')
            ~ " (users whose stored evidence no longer checks are recomputed)",
    }[mode], info=True) %}
{%- endif %}
with message_labels as (
    select
        message_id,
        bit_xor({{ row_checksum(['action_set', 'action']) }}) as labels_checksum
    from {{ ref('int_messages__labels') }}
    group by message_id
),

-- every scored send matured by as_of, with the actions it is counted under and its checksum
scored {{ materialized_cte() }} (
    select
        outcomes.send_id,
        outcomes.user_id,
        outcomes.matured_at,
        outcomes.reward,
        actions.message_id,
        actions.channel,
        actions.send_hour,
        actions.frequency,
        {{ row_checksum([
            'outcomes.send_id', 'outcomes.reward', 'actions.channel', 'actions.send_hour', 'actions.frequency',
            'actions.message_id', 'coalesce(message_labels.labels_checksum, 0)',
        ]) }} as send_checksum
    from {{ ref('send_outcomes') }} as outcomes
    inner join {{ ref('int_sends__actions') }} as actions
        on actions.send_id = outcomes.send_id
    left join message_labels
        on message_labels.message_id = actions.message_id
    where
        outcomes.is_scored
        and outcomes.matured_at <= {{ as_of() }}
),
{%- if mode == 'add' %}

batch as (
    select send_id from {{ ref('int_sends__to_score') }}
),

stored as (
    select
        user_id,
        any_value(user_sends) as user_sends,
        any_value(user_checksum) as user_checksum
    from {{ this }}
    group by user_id
),

-- what each user's stored rows should hold: the sends matured by the last run's as_of, less
-- this run's batch (scored after it)
expected as (
    select
        user_id,
        count(*) as user_sends,
        bit_xor(send_checksum) as user_checksum
    from scored
    where
        matured_at <= {{ last_as_of }}
        and send_id not in (select batch.send_id from batch)
    group by user_id
),

recomputed as (
    select coalesce(stored.user_id, expected.user_id) as user_id
    from stored
    full outer join expected
        on expected.user_id = stored.user_id
    where
        coalesce(stored.user_sends, 0) <> coalesce(expected.user_sends, 0)
        or coalesce(stored.user_checksum, 0) <> coalesce(expected.user_checksum, 0)
),

-- the sends this run counts: a recomputed user's all, another user's new ones
counted {{ materialized_cte() }} (
    select scored.*
    from scored
    where
        scored.matured_at > {{ last_as_of }}
        or scored.send_id in (select batch.send_id from batch)
        or scored.user_id in (select recomputed.user_id from recomputed)
),
{%- elif mode == 'rebuild' %}

recomputed as (
    select user_id from {{ this }}
    union
    select user_id from scored
),

counted as (
    select * from scored
),
{%- else %}

counted as (
    select * from scored
),
{%- endif %}

counted_actions as (
    {{ action_rows('counted', ['user_id', 'matured_at', 'reward']) }}
),

added as (
    select
        user_id,
        action_set,
        action,
        sum(reward) as successes,
        count(*) as trials,
        sum(reward * {{ evidence_decay('matured_at') }}) as decayed_successes,
        sum({{ evidence_decay('matured_at') }}) as decayed_trials
    from counted_actions
    group by user_id, action_set, action
),

added_totals as (
    select
        user_id,
        count(*) as user_sends,
        bit_xor(send_checksum) as user_checksum
    from counted
    group by user_id
),
{%- if mode == 'add' %}

-- the stored rows of the users with new sends who are not recomputed, brought to as_of
kept as (
    select
        kept.user_id,
        kept.action_set,
        kept.action,
        kept.successes,
        kept.trials,
        kept.decayed_successes * {{ evidence_decay('kept.evidence_as_of') }} as decayed_successes,
        kept.decayed_trials * {{ evidence_decay('kept.evidence_as_of') }} as decayed_trials,
        kept.user_sends,
        kept.user_checksum
    from {{ this }} as kept
    where
        kept.trials > 0
        and kept.user_id in (select added_totals.user_id from added_totals)
        and kept.user_id not in (select recomputed.user_id from recomputed)
),

kept_totals as (
    select
        user_id,
        any_value(user_sends) as user_sends,
        any_value(user_checksum) as user_checksum
    from kept
    group by user_id
),

evidence as (
    select
        coalesce(added.user_id, kept.user_id) as user_id,
        coalesce(added.action_set, kept.action_set) as action_set,
        coalesce(added.action, kept.action) as action,
        coalesce(kept.successes, 0) + coalesce(added.successes, 0) as successes,
        coalesce(kept.trials, 0) + coalesce(added.trials, 0) as trials,
        coalesce(kept.decayed_successes, 0.0) + coalesce(added.decayed_successes, 0.0) as decayed_successes,
        coalesce(kept.decayed_trials, 0.0) + coalesce(added.decayed_trials, 0.0) as decayed_trials
    from added
    full outer join kept
        on kept.user_id = added.user_id
        and kept.action_set = added.action_set
        and kept.action = added.action
),

totals as (
    select
        added_totals.user_id,
        added_totals.user_sends + coalesce(kept_totals.user_sends, 0) as user_sends,
        xor(added_totals.user_checksum, coalesce(kept_totals.user_checksum, 0)) as user_checksum
    from added_totals
    left join kept_totals
        on kept_totals.user_id = added_totals.user_id
),
{%- else %}

evidence as (
    select * from added
),

totals as (
    select * from added_totals
),
{%- endif %}

rows_out as (
    select
        evidence.user_id,
        evidence.action_set,
        evidence.action,
        cast(evidence.successes as bigint) as successes,
        cast(evidence.trials as bigint) as trials,
        cast(evidence.decayed_successes as double) as decayed_successes,
        cast(evidence.decayed_trials as double) as decayed_trials,
        {{ as_of() }} as evidence_as_of,
        cast(totals.user_sends as bigint) as user_sends,
        cast(totals.user_checksum as bigint) as user_checksum,
        cast({{ half_life }} as double) as half_life_days
    from evidence
    inner join totals
        on totals.user_id = evidence.user_id
    {%- if mode != 'build' %}
    union all
    -- a recomputed user left without evidence: one row with trials 0 replaces the old ones
    select
        recomputed.user_id,
        '' as action_set,
        '' as action,
        cast(0 as bigint) as successes,
        cast(0 as bigint) as trials,
        cast(0.0 as double) as decayed_successes,
        cast(0.0 as double) as decayed_trials,
        {{ as_of() }} as evidence_as_of,
        cast(0 as bigint) as user_sends,
        cast(null as bigint) as user_checksum,
        cast({{ half_life }} as double) as half_life_days
    from recomputed
    where recomputed.user_id not in (select totals.user_id from totals)
    {%- endif %}
)

select * from rows_out
-- stored by user: marts.action_outcomes is read a chunk of users at a time (user_id between),
-- and DuckDB skips the row groups outside a chunk by their min and max
order by user_id, action_set, action
