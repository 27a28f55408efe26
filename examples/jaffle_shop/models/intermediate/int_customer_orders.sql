select
    customer_id,
    min(order_date) as first_order_date,
    max(order_date) as most_recent_order_date,
    count(*) as order_count
from {{ ref('stg_orders') }}
group by customer_id
