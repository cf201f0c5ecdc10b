"""Training: the supernet bilevel loop and the from-scratch trainer."""
