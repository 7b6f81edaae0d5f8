"""The suites shipyard brings for any Bento: smoke, contract, load and stress. They know no
project: what they send comes from the project's samples file or the served OpenAPI document."""
