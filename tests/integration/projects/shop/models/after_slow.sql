select count(*) as n from {{ ref('slow_py' if target.type == 'duckdb' else 'slow_pg') }}
