"""The evaluation protocol every model and report shares: the leave-one-out split, the
scorer contract, full ranking with history masks, and the metrics."""
