select
    (select count(*) from {{ ref('orders') }}) as own_orders,
    (select count(*) from {{ ref('names_lib', 'orders') }}) as lib_orders,
    (select count(*) from {{ ref('customers', v=1) }}) as customers_v1,
    (select count(*) from {{ ref('customers') }}) as customers_latest,
    (select count(*) from {{ ref('daily-sales') }}) as sales
