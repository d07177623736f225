"""Apache Kafka's jars, resolved by Maven from `pom.xml` beside this file.

Maven downloads them once into its own cache (~/.m2); the classpath it prints is kept in a small
file keyed by the pom's digest, so later runs start the broker without running Maven at all
(Maven costs ~3 s even offline). Delete that file, or change the pom, to resolve again.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

POM = Path(__file__).resolve().parent / "pom.xml"


class KafkaToolsMissing(RuntimeError):
    """Java or Maven is not installed: Apache Kafka cannot run here."""


class KafkaJarsError(RuntimeError):
    """Maven could not resolve the broker's jars."""


def java_binary() -> str:
    home = os.environ.get("JAVA_HOME")
    candidate = Path(home, "bin", "java") if home else None
    if candidate is not None and candidate.is_file():
        return str(candidate)
    found = shutil.which("java")
    if found is None:
        raise KafkaToolsMissing("Apache Kafka needs Java 17 or newer (Debian: apt-get install default-jre-headless)")
    return found


def maven_binary() -> str:
    found = shutil.which("mvn")
    if found is None:
        raise KafkaToolsMissing("fetching Apache Kafka needs Maven (Debian: apt-get install maven)")
    return found


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "redline-tests" / "apache-kafka"


def _cached_classpath(path: Path) -> str | None:
    if not path.is_file():
        return None
    classpath = path.read_text().strip()
    # Maven's cache may have been cleaned since: trust the file only while every jar is there.
    if classpath and all(Path(jar).is_file() for jar in classpath.split(os.pathsep)):
        return classpath
    return None


def kafka_classpath(timeout_seconds: float = 600.0) -> str:
    """The broker's runtime classpath (`kafka_2.13` and its dependencies), resolving it if needed."""
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()[:16]
    classpath_file = cache_dir() / f"classpath-{digest}.txt"
    cached = _cached_classpath(classpath_file)
    if cached is not None:
        return cached
    classpath_file.parent.mkdir(parents=True, exist_ok=True)
    partial = classpath_file.with_suffix(f".{os.getpid()}.tmp")
    command = [maven_binary(), "-q", "-B", "-Dstyle.color=never", "-f", str(POM),
               "dependency:build-classpath", f"-Dmdep.outputFile={partial}"]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_seconds, check=False)
    except subprocess.TimeoutExpired as exc:
        raise KafkaJarsError(f"Maven did not resolve Apache Kafka within {timeout_seconds:.0f}s") from exc
    if result.returncode != 0 or not partial.is_file():
        output = (result.stdout + result.stderr).strip()[-4000:]
        raise KafkaJarsError(f"`{' '.join(command)}` failed with code {result.returncode}:\n{output}")
    partial.replace(classpath_file)  # atomic: a concurrent run reads either nothing or all of it
    resolved = _cached_classpath(classpath_file)
    if resolved is None:
        raise KafkaJarsError(f"Maven wrote a classpath whose jars are missing: {classpath_file}")
    return resolved
