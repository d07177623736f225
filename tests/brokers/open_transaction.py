"""A producer that opens a transaction, writes into it and then hangs: the test SIGKILLs it.

    python open_transaction.py BOOTSTRAP TOPIC TRANSACTIONAL_ID TRANSACTION_TIMEOUT_MS RECORDS

Prints `sent` once its records are acknowledged (written to the log, not yet committed). Run as a
process of its own so that the kill is a real crash: no EndTxn, no close, no LeaveGroup.
"""

from __future__ import annotations

import asyncio
import sys

from aiokafka import AIOKafkaProducer


async def main(bootstrap: str, topic: str, transactional_id: str, timeout_ms: int, records: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=transactional_id,
                                transaction_timeout_ms=timeout_ms)
    await producer.start()
    await producer.begin_transaction()
    for i in range(records):
        await producer.send(topic, f"open-{i}".encode())
    await producer.flush()
    print("sent", flush=True)
    await asyncio.Event().wait()  # hold the transaction open until killed


if __name__ == "__main__":
    bootstrap, topic, transactional_id, timeout_ms, records = sys.argv[1:]
    asyncio.run(main(bootstrap, topic, transactional_id, int(timeout_ms), int(records)))
