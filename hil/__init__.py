"""evhil: hardware-in-the-loop testing and conformance checking of EV charging systems."""

__version__ = "0.1.0"
