select
    id as store_id,
    name as store_name,
    cast(opened_at as date) as opened_at
from {{ ref('raw_stores') }}
