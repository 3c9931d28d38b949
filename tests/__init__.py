"""newsarchive tests: unit, integration and end-to-end, against real local servers."""
