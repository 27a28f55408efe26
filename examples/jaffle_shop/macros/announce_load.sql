{# Called with `dbt run-operation announce_load --args '{load_date: 2026-01-01}'` before a build
   (examples/snippets/before_the_build.py): where a real project would register or check a load. #}
{% macro announce_load(load_date) %}
  {{ log("Loading the data of " ~ load_date, info=True) }}
{% endmacro %}
