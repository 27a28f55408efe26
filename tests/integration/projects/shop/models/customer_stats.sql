select c.customer_id, count(o.order_id) as order_count
from {{ ref('stg_customers') }} as c left join {{ ref('stg_orders') }} as o using (customer_id)
group by c.customer_id
