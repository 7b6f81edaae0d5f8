"""The staged test harness: run suites against an environment, judge gates, record a verdict."""
