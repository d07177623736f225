"""What the broker says about Redline's settings before the stream starts: the reasons it never will.

    broker_refusal(settings)      one line saying why the stream cannot work against this broker as
                                  configured, or None. `serve` refuses to start on it (exit 2).
    connection_refusal(settings)  the login part alone; the loops use it to log why a connection
                                  failed, where aiokafka only says "Unable to bootstrap".

- Login: one direct connection to a bootstrap server. aiokafka's clients turn a refused SASL login
  into a generic bootstrap failure (the reason is only in their log); `create_conn` raises the
  broker's `SaslAuthenticationFailed` itself, in ~0.3 s. Wrong credentials, an unknown mechanism and
  a broker certificate the CA file does not verify are refusals.
- Transactions (exactly_once only): a transactional producer must start. tansu answers aiokafka's
  InitProducerId with a bare UnknownError; a principal without the transactional-id ACL gets
  TransactionalIdAuthorizationFailed.

A broker that does not answer is no refusal: the stream retries until it does, while HTTP serves.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Final

from aiokafka.conn import create_conn
from aiokafka.errors import KafkaError, SaslAuthenticationFailed, UnsupportedSaslMechanismError

from service.kafka.options import client_options
from service.kafka.transactions import TransactionsUnavailable, close_producer, start_transactional_producer
from service.settings import Settings

log = logging.getLogger(__name__)

_CONNECT_SECONDS: Final = 10.0
_TRANSACTIONS_SECONDS: Final = 30.0  # a fresh cluster creates its transaction log on first use


def _servers(settings: Settings) -> list[tuple[str, int]]:
    servers = []
    for item in settings.kafka_bootstrap.split(","):
        host, _, port = item.strip().rpartition(":")
        if host and port.isdigit():
            servers.append((host.strip("[]"), int(port)))
    return servers


async def connection_refusal(settings: Settings) -> str | None:
    """Why the broker refuses Redline's connection settings, or None (also when nobody answers)."""
    return (await _login(settings))[1]


async def _login(settings: Settings) -> tuple[bool, str | None]:
    """(a server answered and let us in, why one refused us)."""
    options = {k: v for k, v in client_options(settings).items() if k != "bootstrap_servers"}
    for host, port in _servers(settings):
        where = f"Kafka at {host}:{port}"
        try:
            connection = await asyncio.wait_for(
                create_conn(host, port, request_timeout_ms=int(_CONNECT_SECONDS * 1000), **options),
                _CONNECT_SECONDS)
        except SaslAuthenticationFailed as exc:
            return False, (f"{where} refused the SASL login of user {settings.kafka_sasl_username!r} "
                           f"({settings.kafka_sasl_mechanism}): {exc.args[0] if exc.args else exc} "
                           "(REDLINE_KAFKA_SASL_USERNAME, REDLINE_KAFKA_SASL_PASSWORD)")
        except UnsupportedSaslMechanismError as exc:
            return False, (f"{where} does not offer SASL mechanism {settings.kafka_sasl_mechanism}: {exc} "
                           "(REDLINE_KAFKA_SASL_MECHANISM)")
        except ssl.SSLCertVerificationError as exc:
            return False, (f"{where} presented a TLS certificate that is not trusted: {exc.verify_message} "
                           "(REDLINE_KAFKA_SSL_CAFILE names the CA bundle that signs it; "
                           "REDLINE_KAFKA_SSL_CHECK_HOSTNAME checks its name)")
        except (TimeoutError, KafkaError, OSError):
            continue  # not answering, or not this way: the next server, then the stream's retries
        connection.close()
        return True, None
    return False, None


async def transactions_refusal(settings: Settings) -> str | None:
    """exactly_once: why this broker gives no transactions, or None (also when it does not answer
    in time: the stream's own producers then retry)."""
    stop = asyncio.Event()
    probe = f"{settings.group_id}-start-check"  # within the prefix the stream's ids use (ACLs)
    starting = asyncio.ensure_future(start_transactional_producer(settings, probe, stop))
    try:
        producer = await asyncio.wait_for(asyncio.shield(starting), _TRANSACTIONS_SECONDS)
    except TransactionsUnavailable as exc:
        return f"{exc} (REDLINE_DELIVERY=at_least_once works with any broker)"
    except TimeoutError:
        stop.set()
        await starting
        log.warning("no answer to a transactional producer's start in time; the stream goes on trying",
                    extra={"seconds": _TRANSACTIONS_SECONDS})
        return None
    if producer is not None:
        await close_producer(producer)
    return None


async def broker_refusal(settings: Settings) -> str | None:
    connected, refusal = await _login(settings)
    if connected and settings.exactly_once:
        refusal = await transactions_refusal(settings)
    return refusal
