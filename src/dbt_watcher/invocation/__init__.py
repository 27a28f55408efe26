"""Invocation: run dbt (in this process or another virtualenv's) and turn its events into typed node results."""
