select customer_id, sum(amount_cents) as total_cents from {{ ref('orders_enriched') }} group by customer_id
