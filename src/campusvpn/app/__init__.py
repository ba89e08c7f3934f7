"""Start-up: builds the context's running parts and serves them."""
