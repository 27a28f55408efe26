select
    payment_method,
    count(*) as payment_count,
    sum(amount) as amount
from {{ ref('stg_payments') }}
group by payment_method
