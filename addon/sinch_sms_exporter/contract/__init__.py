"""The contract, as pure data: the Sinch error catalog, the label vocabularies, the alert
names and the records classification hands to the metrics. Imports neither mitmproxy nor
prometheus_client, so every other part (and every tool) may import it."""
