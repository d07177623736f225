"""The pure classification engine: no I/O, no logging, no metrics, no clock reads."""
