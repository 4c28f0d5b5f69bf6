"""One router per area of the console; each module exposes ``router``."""
