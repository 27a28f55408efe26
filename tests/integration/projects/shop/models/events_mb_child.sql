{{ config(enabled=var('microbatch', false)) }}
select count(*) as events from {{ ref('events_mb') }}
