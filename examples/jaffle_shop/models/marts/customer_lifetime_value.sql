select
    c.customer_id,
    c.first_name,
    c.last_name,
    coalesce(sum(o.amount), 0) as lifetime_value
from {{ ref('customers') }} as c
left join {{ ref('orders') }} as o using (customer_id)
group by c.customer_id, c.first_name, c.last_name
