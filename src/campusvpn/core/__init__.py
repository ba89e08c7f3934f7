"""Pure domain rules: no database, no network; time is always passed in."""
