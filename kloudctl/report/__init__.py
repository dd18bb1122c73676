"""Reports: what people read (tables, summaries), built from the model and live state."""
