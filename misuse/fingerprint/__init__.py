"""Is this device the device it claims to be: device-type fingerprints from traffic, and their drift."""
