"""Mentator LLM Service: a local LLM behind an HTTP API with schema-guaranteed JSON answers."""
