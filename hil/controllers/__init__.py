"""Reference charging controllers and the allocation rules they share."""
