// Send events to a collector with the official `posthog-node` client.
//
// Usage: node send_node.mjs HOST PROJECT_KEY RUN_ID
// Prints, as one JSON array on stdout, the events it captured (uuid, event, distinct_id,
// properties) so the Rust test can check each landed exactly once. Talks only to HOST.
import { randomUUID } from 'node:crypto'
import { PostHog } from 'posthog-node'

const [host, key, runId] = process.argv.slice(2)
const sent = []

// Once with the client's default compression and once without.
for (const disableCompression of [false, true]) {
  const client = new PostHog(key, {
    host,
    disableCompression,
    disableGeoip: true,
    enableExceptionAutocapture: false,
    flushAt: 100,
    flushInterval: 200,
    fetchRetryCount: 1,
    requestTimeout: 10000,
  })
  for (let n = 0; n < 3; n++) {
    const properties = {
      run: runId,
      compressed: !disableCompression,
      n,
      nested: { list: [1, 2, 3], text: 'h\u00e9llo \u2603' },
      $process_person_profile: false,
    }
    const uuid = randomUUID()
    client.capture({ distinctId: `node-${runId}`, event: 'node_event', properties, uuid })
    sent.push({ uuid, event: 'node_event', distinct_id: `node-${runId}`, properties })
  }
  // Flushes everything queued and waits for the uploads.
  await client.shutdown(10000)
}

console.log(JSON.stringify(sent))
