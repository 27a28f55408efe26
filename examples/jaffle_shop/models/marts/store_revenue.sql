select
    s.store_id,
    s.store_name,
    count(o.order_id) as order_count,
    coalesce(sum(o.amount), 0) as revenue
from {{ ref('stg_stores') }} as s
left join {{ ref('orders') }} as o using (store_id)
group by s.store_id, s.store_name
