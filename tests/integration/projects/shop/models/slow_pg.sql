{{ config(pre_hook="select pg_sleep(" ~ var('sleep_seconds', 0) ~ ")") }}
select * from {{ ref('stg_orders') }}
