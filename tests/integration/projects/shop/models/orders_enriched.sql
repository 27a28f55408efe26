{% if var('fail_model', '') == 'orders_enriched' %}
select no_such_column from {{ ref('int_orders') }}
{% else %}
select o.order_id, o.customer_id, c.name, o.amount_cents
from {{ ref('int_orders') }} as o join {{ ref('stg_customers') }} as c using (customer_id)
{% endif %}
