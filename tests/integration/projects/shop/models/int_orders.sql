{{ config(materialized='ephemeral') }}
select order_id, customer_id, amount * 100 as amount_cents from {{ ref('stg_orders') }}
