{{ config(materialized='table') }}
-- Step 2, the batch of this run: sends matured by as_of (matured_at <= as_of) that are not
-- yet in marts.send_outcomes. Outcomes are measured once and then frozen, so a run scores
-- only new matured sends, a rerun scores nothing, and late-arriving events never rescore.
-- send_outcomes is read directly (not ref'd: it is downstream); a --full-refresh rescoring
-- everything ignores it.
{%- set scored = none -%}
{%- if execute and not flags.FULL_REFRESH -%}
    {%- set scored = adapter.get_relation(
        database=target.database, schema=generate_schema_name('marts', model), identifier='send_outcomes'
    ) -%}
{%- endif %}
with windows as (
    select * from {{ ref('int_sends__windows') }}
),

matured as (
    select * from windows
    where matured_at <= {{ as_of() }}
),

to_score as (
    select
        matured.*,
        -- the bin of the hours since the user's previous send (gap_bin macro): placebos share it
        {{ gap_bin('actions.hours_since_previous_send') }} as gap_bin
    from matured
    inner join {{ ref('int_sends__actions') }} as actions
        on actions.send_id = matured.send_id
    {%- if scored is not none %}
    anti join {{ scored }} as scored
        on scored.send_id = matured.send_id
    {%- endif %}
)

select * from to_score
