-- Step 3 (controls and placebos), the pool each user is drawn from at each feature date: the
-- user's cell, or with control_pool 'group' the cell without its activity bucket. Controls
-- and placebos join the sends with it on (feature_date, pool), one equi-join of about
-- cell_size candidates per send (joining the sends with every user of the day first, then
-- filtering on the cell, grew as sends x users).
with features as (
    select * from {{ ref('int_user_features__dated') }}
),

pools as (
    select
        feature_date,
        user_id,
        user_hash,
        cell,
        z_events,
        z_goals,
        z_active_days,
        z_recency,
        {%- if var('control_pool') == 'group' %}
        regexp_replace(cell, '/a[0-9]+$', '') as pool
        {%- else %}
        cell as pool
        {%- endif %}
    from features
)

select * from pools
