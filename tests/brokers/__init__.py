"""Real brokers for the tests: Apache Kafka run from Maven Central's jars, and the embedded tansu.

apache_kafka.py starts and stops a KRaft broker; plugin.py has the pytest fixtures; broker.py the
`Broker` protocol both kinds satisfy. The test modules here prove what aiokafka does against
Apache Kafka 4.x: security listeners, groups and offsets, idempotent and transactional producers.
"""
