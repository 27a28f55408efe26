select 10 as amount
