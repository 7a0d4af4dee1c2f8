"""The consumer/producer runtime: turning records into handler calls and handler results into records."""
