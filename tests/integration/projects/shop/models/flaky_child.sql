select count(*) as n from {{ ref('flaky') }}
