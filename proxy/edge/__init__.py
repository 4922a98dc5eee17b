"""The proxy's edge, before any routing: header and body limits, app-key authentication
(the key cache, the failed-authentication counter) and scrubbing secrets from logs."""
