"""Examples of jaxmlp used as a library: a user's own model, data and hyperparameters."""
