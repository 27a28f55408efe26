-- Fails (returns rows) when the run's vars ask for it.
select * from {{ ref('customer_stats') }} where {{ 'true' if var('fail_test', false) else 'false' }}
