"""The core every stage reads: settings, wire records, the event model, frames, privacy, engine access."""
