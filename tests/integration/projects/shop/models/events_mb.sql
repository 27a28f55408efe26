{# A microbatch model (one batch per day): with var fail_batch_day, that day's batch fails and dbt's
   final status for the model is "partial success". Enabled with var microbatch (its own DAG). #}
{{ config(materialized='incremental', incremental_strategy='microbatch', event_time='event_ts', batch_size='day',
          begin='2026-01-01', enabled=var('microbatch', false)) }}
{% if model.batch and model.batch.event_time_start.day == var('fail_batch_day', 0) %}
select this is not valid sql from
{% else %}
select id, event_ts from {{ ref('raw_events_mb') }}
{% endif %}
