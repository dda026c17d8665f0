"""Text generation backends. Each runs inside the model worker thread, never on the event loop."""
