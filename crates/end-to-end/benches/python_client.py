"""Throughput of the official `posthog` Python client into a collector.

Usage: python3 python_client.py HOST PROJECT_KEY EVENTS
Captures EVENTS events with about ten properties, flushes, and prints one JSON object:
{"events": N, "seconds": S}. Talks only to HOST.
"""

import json
import sys
import time

from posthog import Posthog


def main() -> None:
    host, key, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    client = Posthog(
        key,
        host=host,
        gzip=True,
        disable_geoip=True,
        enable_exception_autocapture=False,
        enable_local_evaluation=False,
        flush_at=100,
        max_queue_size=count + 1,
        max_retries=3,
    )
    start = time.perf_counter()
    for n in range(count):
        client.capture(
            "bench_event",
            distinct_id="python-bench",
            properties={
                "client": "posthog-python",
                "n": n,
                "step_type": "llm_step",
                "success": True,
                "tool_id": "search",
                "model": "gpt-4o-mini",
                "sync": False,
                "plan_length": 4,
                "agent_type": "default_agent",
                "attempt": 1,
            },
        )
    client.flush()
    client.shutdown()
    print(json.dumps({"events": count, "seconds": time.perf_counter() - start}))


if __name__ == "__main__":
    main()
