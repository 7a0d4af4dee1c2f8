"""Metrics, traces and logs: choreography's visibility."""
