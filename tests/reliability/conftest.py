"""Reliability fixtures: the stream's are the suite's (tests/conftest.py); the brokers whose data
survives a restart are made by test_nothing_lost.py's `fault_broker`."""
