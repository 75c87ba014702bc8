"""mitmproxy's side: the addon (options, thin hooks), the lean Master, the upstream deadline,
listener health and log redaction."""
