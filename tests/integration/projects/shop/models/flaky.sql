-- With the var `flaky`, fails until flaky_input.csv exists in the project folder: a transient fault.
{% if var('flaky', false) %}
select * from read_csv_auto('flaky_input.csv')
{% else %}
select 1 as x
{% endif %}
