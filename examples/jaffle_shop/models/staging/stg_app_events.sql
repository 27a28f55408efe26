select
    event_id,
    customer_id,
    event_type,
    loaded_at
from {{ source('app', 'events') }}
