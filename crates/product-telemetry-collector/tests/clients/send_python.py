"""Send events to a collector with the official `posthog` Python client.

Usage: python3 send_python.py HOST PROJECT_KEY RUN_ID
Prints, as one JSON array on stdout, the events it captured (uuid, event, distinct_id,
properties) so the Rust test can check each landed exactly once. Talks only to HOST.
"""

import json
import sys

from posthog import Posthog


def main() -> None:
    host, key, run_id = sys.argv[1:4]
    sent = []
    # Once plain and once gzip-compressed: the two ways this client uploads.
    for gzip in (False, True):
        client = Posthog(
            key,
            host=host,
            gzip=gzip,
            capture_mode="v0",
            disable_geoip=True,
            enable_exception_autocapture=False,
            enable_local_evaluation=False,
            flush_at=100,
            flush_interval=0.2,
            max_retries=1,
            timeout=10,
        )
        for n in range(3):
            properties = {
                "run": run_id,
                "gzip": gzip,
                "n": n,
                "nested": {"list": [1, 2, 3], "text": "h\u00e9llo \u2603"},
                "$process_person_profile": False,
            }
            event_uuid = client.capture(
                "python_event",
                distinct_id=f"py-{run_id}",
                properties=properties,
            )
            if event_uuid is None:
                sys.exit("capture() returned no uuid")
            sent.append(
                {
                    "uuid": str(event_uuid),
                    "event": "python_event",
                    "distinct_id": f"py-{run_id}",
                    "properties": properties,
                }
            )
        # Flushes the queue and waits for the consumer thread.
        client.shutdown()
    print(json.dumps(sent))


if __name__ == "__main__":
    main()
