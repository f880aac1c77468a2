"""Everything about the HTTP side: extract specs, secrets, pagination and the client."""
