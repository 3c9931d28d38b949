"""Reading the archive back for people: listing and formatting (the web UI comes later)."""
