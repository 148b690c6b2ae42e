{{ config(materialized='table') }}
-- Step 3 (controls) and the Python steps: every user at as_of, the as_of rows of
-- int_user_features__dated (features over [as_of - 28 days, as_of) and the matching cell).
select * {{ star_except() }} (feature_date)
from {{ ref('int_user_features__dated') }}
where feature_date = {{ as_of() }}
