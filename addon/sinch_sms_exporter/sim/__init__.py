"""A Sinch SMS API simulator and a traffic generator: shipped in the image because the compose
demo runs them, never imported by the sidecar's runtime."""
