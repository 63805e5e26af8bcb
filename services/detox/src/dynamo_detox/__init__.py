"""Dynamo detox: deletes replicas following a human-readable policy when sites fill up, keeps
a record of every decision, and runs policies as tests without deleting anything."""
