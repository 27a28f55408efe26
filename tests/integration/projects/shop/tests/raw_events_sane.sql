-- A test on a source: it checks no model, so it gates no consumer. Fails with var fail_source_test;
-- dbt then skips what reads the source (events_daily), whose consumer names this test.
select * from {{ source('raw', 'events') }} where {{ 'true' if var('fail_source_test', false) else 'false' }}
