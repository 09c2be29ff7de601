"""The engine: run one configuration or a suite, keep its records, provenance and results folder."""
