-- Like flaky, with the var `flaky_b`: a second model whose consumer may rebuild at the same time as flaky's.
{% if var('flaky_b', false) %}
select * from read_csv_auto('flaky_input.csv')
{% else %}
select 2 as x
{% endif %}
