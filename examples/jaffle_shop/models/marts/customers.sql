select
    c.customer_id,
    c.first_name,
    c.last_name,
    co.first_order_date,
    co.most_recent_order_date,
    coalesce(co.order_count, 0) as order_count
from {{ ref('stg_customers') }} as c
left join {{ ref('int_customer_orders') }} as co using (customer_id)
