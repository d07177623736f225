"""The broker tests' fixtures are the suite's (tests/conftest.py imports them from plugin.py): one
Apache Kafka for the whole session, whichever suite asks first."""
