"""From traffic to label values: request path → endpoint, host → region, answer → Outcome,
failure → reason. Knows nothing of Prometheus; `routes` knows nothing of mitmproxy either."""
