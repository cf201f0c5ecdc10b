"""Search spaces, one file each."""
