"""Reference studies of jaxmlp, one module each; ``python -m experiments`` lists and runs them."""
