"""mpx: train, export and run a next-note LSTM MIDI generator."""
__version__ = "0.1.0"
