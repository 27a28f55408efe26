select
    o.order_id,
    o.customer_id,
    o.store_id,
    o.order_date,
    o.status,
    coalesce(p.amount, 0) as amount,
    coalesce(p.coupon_amount, 0) as coupon_amount
from {{ ref('stg_orders') }} as o
left join {{ ref('int_order_payments') }} as p using (order_id)
